#pragma once
// What each slide's features held when they were read: XXH3-64 of the features dataset's values as stored in
// the file (float16, float32 or float64, before any conversion, rounding to the float16 cache, or the
// finiteness check), whichever reader read them (contiguous, or CLAM's one chunk per instance). Kept per
// slide and carried by the checkpoints, so that a resumed job notices a slide whose values changed under the
// same id and shape: the index's digest (checkpoint_state.hpp) sees only ids, instance counts and labels.
// Hashing costs one pass over bytes just read, at memory speed, on the loader's reader thread.
#include <cstddef>
#include <cstdint>
#include <map>
#include <mutex>
#include <string>

namespace mil {

// XXH3-64 of `size` bytes.
uint64_t feature_digest(const void* data, size_t size);
// 16 lower-case hex digits, and back (throws mil::Error on anything else).
std::string digest_hex(uint64_t digest);
uint64_t parse_digest_hex(const std::string& text);

// slide id -> digest of its features.
using DigestMap = std::map<std::string, uint64_t>;

// The digests of one channel's slides (the training channel, with every fold and split of it; the validation
// channel). Thread-safe: the reader threads of the training and validation loaders record into it.
class SlideDigests {
 public:
  explicit SlideDigests(std::string channel) : channel_(std::move(channel)) {}
  SlideDigests(const SlideDigests&) = delete;
  SlideDigests& operator=(const SlideDigests&) = delete;

  // "train" or "validation": the key of this channel's digests in a checkpoint.
  const std::string& channel() const { return channel_; }

  // The digests checkpoint `source` kept: each slide is checked against its digest when it is next read.
  void expect(DigestMap digests, std::string source);

  // Records what `slide_id`'s file `path` held. Throws mil::Error(path, slide_id, ...) when the values differ
  // from the ones the resumed checkpoint saw, or from an earlier read in this process: the model would train
  // on other data than it has so far, silently.
  void record(const std::string& slide_id, const std::string& path, uint64_t digest);

  // Another rank's records: kept for the next checkpoint, not checked again (that rank checked them).
  void merge(const DigestMap& digests);
  // Records since the last call (what this rank has to tell the others before a checkpoint).
  DigestMap take_fresh();
  // What the next checkpoint keeps: every slide read so far, and the resumed checkpoint's slides not read
  // again yet.
  DigestMap all() const;

 private:
  const std::string channel_;
  mutable std::mutex mutex_;
  DigestMap expected_;  // from the resumed checkpoint
  std::string source_;  // that checkpoint, for messages
  DigestMap seen_;      // read (or merged) in this process
  DigestMap fresh_;     // recorded since take_fresh()
};

}  // namespace mil
