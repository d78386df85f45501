#pragma once
// Feeds bags to the trainer: a background thread reads the next bags from disk (or the RAM cache) while
// the current one trains, with a bounded number of bags in flight.
#include <torch/torch.h>

#include <condition_variable>
#include <deque>
#include <exception>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "mil/data/bag_index.hpp"

namespace mil {

struct Bag {
  int64_t index = -1;      // position in BagIndex::bags
  torch::Tensor features;  // [N, D] float32
  torch::Tensor coords;    // [N, 2] int64; undefined when the file has none or coords were not asked for
};

// Reads one bag: features as float32, checked against the index's shape and for NaN/Inf. Throws
// mil::Error naming the file, the dataset and the first bad row.
Bag read_bag(const BagInfo& info, int64_t index, const std::string& features_key, bool with_coords);

enum class CacheMode {
  kNone,     // read from disk every epoch
  kFloat16,  // keep features in RAM as float16 after the first read (half the memory)
  kFloat32,  // keep them as float32 (exact)
};
CacheMode parse_cache_mode(const std::string& s);  // "none" | "ram" | "ram32"

struct LoaderOptions {
  std::string features_key = "features";
  int prefetch = 4;  // bags read ahead of the trainer (memory bound: prefetch x bag size)
  CacheMode cache = CacheMode::kNone;
  bool with_coords = false;  // also read `coords` (evaluation / attention export)
};

class BagLoader {
 public:
  BagLoader(const BagIndex& index, LoaderOptions options);
  ~BagLoader();
  BagLoader(const BagLoader&) = delete;
  BagLoader& operator=(const BagLoader&) = delete;

  // Starts reading the bags at these positions of the index, in this order, in the background (ending any
  // previous pass). next() then returns them one by one in the same order.
  void start(std::vector<int64_t> order);
  // Blocks until the next bag is ready. Rethrows the reader's error (mil::Error) at the bag that failed.
  Bag next();
  bool has_next() const;

  int64_t cached_bags() const;
  int64_t cache_bytes() const;

 private:
  void stop();
  void read_loop(std::vector<int64_t> order);
  Bag load(int64_t index);

  const BagIndex& index_;
  LoaderOptions options_;

  mutable std::mutex mutex_;
  std::condition_variable changed_;
  std::deque<std::pair<Bag, std::exception_ptr>> ready_;
  size_t pending_ = 0;  // bags of the current pass not yet returned by next()
  bool stopping_ = false;
  bool reader_done_ = false;  // the reader thread has left its loop
  std::thread reader_;

  std::vector<torch::Tensor> cache_;  // by bag index; guarded by mutex_
  int64_t cache_bytes_ = 0;
};

}  // namespace mil
