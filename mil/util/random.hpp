#pragma once
// The project's one random generator. Plans (epoch orders, splits) and dropout seeds are pure functions of
// (seed, epoch, stream...) built only from it, so they are identical on every machine and standard library.
#include <cstdint>
#include <vector>

namespace mil {

// SplitMix64 (Steele, Lea, Flood 2014; reference code by S. Vigna, https://prng.di.unimi.it/splitmix64.c).
// Chosen over <random> because std::shuffle and the distributions are not specified bit-for-bit.
class SplitMix64 {
 public:
  explicit SplitMix64(uint64_t seed) : state_(seed) {}
  uint64_t next();
  // Uniform in [0, bound), exactly unbiased: rejects the 2^64 mod bound lowest raw values. bound > 0.
  uint64_t bounded(uint64_t bound);
  // Uniform in [0, 1) with 53 random bits.
  double uniform();

 private:
  uint64_t state_;
};

// SplitMix64's output function, used to derive independent seeds for (seed, epoch, stream) triples.
uint64_t mix64(uint64_t z);

// Fisher–Yates: for i = n-1 down to 1 swap v[i] with v[rng.bounded(i + 1)].
void fisher_yates_shuffle(std::vector<int64_t>& v, SplitMix64& rng);

}  // namespace mil
