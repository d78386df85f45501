#include "mil/data/slide_digests.hpp"

#include <xxhash.h>

#include <cstdio>

#include "mil/util/error.hpp"

namespace mil {

uint64_t feature_digest(const void* data, size_t size) {
  return XXH3_64bits(data, size);
}

std::string digest_hex(uint64_t digest) {
  char text[17];
  std::snprintf(text, sizeof text, "%016llx", static_cast<unsigned long long>(digest));
  return text;
}

uint64_t parse_digest_hex(const std::string& text) {
  uint64_t value = 0;
  bool ok = text.size() == 16;
  for (size_t i = 0; ok && i < text.size(); ++i) {
    const char c = text[i];
    const int digit = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
    ok = digit >= 0;
    value = value << 4 | static_cast<uint64_t>(digit & 0xf);
  }
  if (!ok) throw Error("", "slide digest", "'" + text + "' is not 16 hex digits");
  return value;
}

void SlideDigests::expect(DigestMap digests, std::string source) {
  std::lock_guard<std::mutex> lock(mutex_);
  expected_ = std::move(digests);
  source_ = std::move(source);
}

void SlideDigests::record(const std::string& slide_id, const std::string& path, uint64_t digest) {
  std::lock_guard<std::mutex> lock(mutex_);
  const auto seen = seen_.find(slide_id);
  if (seen != seen_.end()) {
    if (seen->second != digest) {
      throw Error(path, "slide " + slide_id,
                  "its features changed while the job ran (same shape, other values: digest " +
                      digest_hex(seen->second) + " at an earlier read, " + digest_hex(digest) +
                      " now); the model has trained on both. Restore the file, or start afresh with --no-resume");
    }
    return;
  }
  const auto expected = expected_.find(slide_id);
  if (expected != expected_.end() && expected->second != digest) {
    throw Error(path, "slide " + slide_id,
                "its features changed since checkpoint " + source_ +
                    " was written (same slide id and shape, other values: digest " + digest_hex(expected->second) +
                    " then, " + digest_hex(digest) +
                    " now), so resuming would continue a training of other data. Restore the file, or pass "
                    "--no-resume (or use a new --checkpoint-dir) to start afresh");
  }
  seen_.emplace(slide_id, digest);
  fresh_.emplace(slide_id, digest);
}

void SlideDigests::merge(const DigestMap& digests) {
  std::lock_guard<std::mutex> lock(mutex_);
  seen_.insert(digests.begin(), digests.end());
}

DigestMap SlideDigests::take_fresh() {
  std::lock_guard<std::mutex> lock(mutex_);
  DigestMap out;
  out.swap(fresh_);
  return out;
}

DigestMap SlideDigests::all() const {
  std::lock_guard<std::mutex> lock(mutex_);
  DigestMap out = seen_;
  out.insert(expected_.begin(), expected_.end());  // keeps seen_'s entry where both have one (they are equal)
  return out;
}

}  // namespace mil
