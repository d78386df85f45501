#pragma once
// Feeds bags to the trainer: a background thread reads the next bags from disk (or the RAM cache) while
// the current one trains, with a bounded number of bags in flight; a pass the cache holds entirely is
// served by next() itself.
#include <torch/torch.h>

#include <condition_variable>
#include <deque>
#include <exception>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "mil/data/bag_cache.hpp"
#include "mil/data/bag_index.hpp"
#include "mil/data/device_upload.hpp"

namespace mil {

struct Bag {
  int64_t index = -1;      // position in BagIndex::bags
  torch::Tensor features;  // [N, D] float32; may be the RAM cache's own tensor: never modify it in place
  torch::Tensor coords;    // [N, 2] int64; undefined when the file has none or coords were not asked for
  uint64_t digest = 0;     // feature_digest of the features as stored in the file; 0 when served from the cache
};

// Reads one bag: features as float32, checked against the index's shape and for NaN/Inf, and the digest of
// the values as stored (slide_digests.hpp). Throws
// mil::Error naming the file, the dataset and the first bad row. Conversions (float16/64 files, int32
// coords) are plain loops on the calling thread, never torch's thread pool. Files whose features are stored
// in small chunks (CLAM's one chunk per instance) are read into memory in one pass and then chunk by chunk.
Bag read_bag(const BagInfo& info, int64_t index, const std::string& features_key, bool with_coords);

struct LoaderOptions {
  std::string features_key = "features";
  int prefetch = 4;  // bags read ahead of the trainer (memory bound: prefetch x bag size)
  CacheMode cache = CacheMode::kNone;
  bool with_coords = false;  // also read `coords` (evaluation / attention export); never cached
  bool bfloat16 = false;     // serve features as bfloat16 (--precision bf16), rounded on the reader thread
  // Serve features on this device: a GPU's are copied on the reader thread, on a side stream, as far ahead as
  // `prefetch` (DeviceUploader); next() makes the caller's stream wait for the copy, not the host.
  torch::Device device = torch::kCPU;
};

class BagLoader {
 public:
  // `options.cache` makes a cache of this loader's own; `shared_cache`, when given, is used instead: one
  // cache for several loaders (every fold, the validation set). Neither is used with `with_coords`.
  BagLoader(const BagIndex& index, LoaderOptions options, std::shared_ptr<BagCache> shared_cache = nullptr);
  ~BagLoader();
  BagLoader(const BagLoader&) = delete;
  BagLoader& operator=(const BagLoader&) = delete;

  // Starts reading the bags at these positions of the index, in this order, in the background (ending any
  // previous pass). next() then returns them one by one in the same order.
  void start(std::vector<int64_t> order);
  // Blocks until the next bag is ready. Rethrows the reader's error (mil::Error) at the bag that failed.
  Bag next();
  bool has_next() const;

  // Of this loader's cache (a shared one counts every loader's bags).
  int64_t cached_bags() const;
  int64_t cache_bytes() const;

 private:
  void stop();
  void read_loop(std::vector<int64_t> order);
  Bag load(int64_t index, Upload& upload);
  // Whether the cache holds every bag of `order` as next() would serve it (its own tensors, on the device,
  // no conversion): such a pass is served on the caller's thread.
  bool served_by_cache(const std::vector<int64_t>& order) const;

  const BagIndex& index_;
  LoaderOptions options_;

  mutable std::mutex mutex_;
  std::condition_variable changed_;
  struct Ready {
    Bag bag;
    Upload upload;  // its features on their way to options_.device
    std::exception_ptr error;
  };
  std::deque<Ready> ready_;
  size_t pending_ = 0;  // bags of the current pass not yet returned by next()
  bool stopping_ = false;
  bool reader_done_ = false;  // the reader thread has left its loop
  std::thread reader_;
  // A pass the cache serves: next() looks bags up itself, no reader thread. Handing each bag over from the
  // reader (two wake-ups and a context switch) cost more than the lookup: ~7% of a tiny-bag run.
  std::vector<int64_t> cached_order_;
  size_t cached_next_ = 0;

  std::shared_ptr<BagCache> cache_;  // null without a cache (and with coords)
  DeviceUploader uploader_;
};

}  // namespace mil
