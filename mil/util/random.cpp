#include "mil/util/random.hpp"

#include <utility>

#include "mil/util/check.hpp"

namespace mil {

uint64_t mix64(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

uint64_t SplitMix64::next() {
  state_ += 0x9e3779b97f4a7c15ULL;
  return mix64(state_);
}

uint64_t SplitMix64::bounded(uint64_t bound) {
  MIL_CHECK(bound > 0, "SplitMix64::bounded");
  // 2^64 mod bound, computed in 64 bits: (2^64 - bound) mod bound. Raw values below it would make the
  // low residues one draw more likely than the others, so they are redrawn.
  const uint64_t threshold = (0 - bound) % bound;
  for (;;) {
    const uint64_t x = next();
    if (x >= threshold) return x % bound;
  }
}

double SplitMix64::uniform() {
  return static_cast<double>(next() >> 11) * 0x1.0p-53;
}

void fisher_yates_shuffle(std::vector<int64_t>& v, SplitMix64& rng) {
  for (size_t i = v.size(); i > 1; --i) {
    const size_t j = static_cast<size_t>(rng.bounded(i));
    std::swap(v[i - 1], v[j]);
  }
}

}  // namespace mil
