#include "mil/data/bag_loader.hpp"

#include "mil/io/h5_reader.hpp"
#include "mil/util/error.hpp"

namespace mil {

Bag read_bag(const BagInfo& info, int64_t index, const std::string& features_key, bool with_coords) {
  io::H5Reader file(info.path);
  Bag bag;
  bag.index = index;
  bag.features = file.read_float(features_key);
  if (bag.features.dim() != 2 || bag.features.size(0) != info.num_instances ||
      bag.features.size(1) != info.feature_dim) {
    throw Error(info.path, features_key, "shape changed since the channel was indexed");
  }
  const torch::Tensor bad_rows = (~torch::isfinite(bag.features)).any(1);
  if (bad_rows.any().item<bool>()) {
    const int64_t row = bad_rows.nonzero()[0][0].item<int64_t>();
    throw Error(info.path, features_key,
                "contains NaN or Inf values (first in row " + std::to_string(row) + " of " +
                    std::to_string(info.num_instances) + ")");
  }
  if (with_coords && info.has_coords) bag.coords = file.read("coords").to(torch::kLong);
  return bag;
}

CacheMode parse_cache_mode(const std::string& s) {
  if (s == "none") return CacheMode::kNone;
  if (s == "ram") return CacheMode::kFloat16;
  if (s == "ram32") return CacheMode::kFloat32;
  throw Error("", "--cache", "unknown value '" + s + "' (none, ram, ram32)");
}

BagLoader::BagLoader(const BagIndex& index, LoaderOptions options)
    : index_(index), options_(std::move(options)), cache_(index.bags.size()) {
  if (options_.prefetch < 1) throw Error("", "--prefetch", "must be >= 1");
}

BagLoader::~BagLoader() {
  stop();
}

void BagLoader::stop() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stopping_ = true;
  }
  changed_.notify_all();
  if (reader_.joinable()) reader_.join();
  std::lock_guard<std::mutex> lock(mutex_);
  stopping_ = false;
  ready_.clear();
  pending_ = 0;
  reader_done_ = false;
}

void BagLoader::start(std::vector<int64_t> order) {
  stop();
  for (int64_t i : order) {
    if (i < 0 || i >= static_cast<int64_t>(index_.bags.size())) throw Error("bag index out of range");
  }
  {
    std::lock_guard<std::mutex> lock(mutex_);
    pending_ = order.size();
  }
  reader_ = std::thread(&BagLoader::read_loop, this, std::move(order));
}

Bag BagLoader::load(int64_t index) {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    const torch::Tensor& cached = cache_[static_cast<size_t>(index)];
    if (cached.defined()) {
      Bag bag;
      bag.index = index;
      // Always a fresh tensor, so nothing the trainer does to it can reach the cache.
      bag.features = options_.cache == CacheMode::kFloat16 ? cached.to(torch::kFloat) : cached.clone();
      return bag;
    }
  }
  const BagInfo& info = index_.bags[static_cast<size_t>(index)];
  Bag bag = read_bag(info, index, options_.features_key, options_.with_coords);
  if (options_.cache != CacheMode::kNone && !options_.with_coords) {
    torch::Tensor keep = options_.cache == CacheMode::kFloat16 ? bag.features.to(torch::kHalf) : bag.features.clone();
    std::lock_guard<std::mutex> lock(mutex_);
    cache_bytes_ += keep.numel() * static_cast<int64_t>(keep.element_size());
    cache_[static_cast<size_t>(index)] = std::move(keep);
  }
  return bag;
}

void BagLoader::read_loop(std::vector<int64_t> order) {
  for (int64_t index : order) {
    {
      std::unique_lock<std::mutex> lock(mutex_);
      changed_.wait(lock, [&] { return stopping_ || ready_.size() < static_cast<size_t>(options_.prefetch); });
      if (stopping_) return;
    }
    std::pair<Bag, std::exception_ptr> item;
    try {
      item.first = load(index);
    } catch (...) {
      item.second = std::current_exception();
    }
    {
      std::lock_guard<std::mutex> lock(mutex_);
      ready_.push_back(std::move(item));
    }
    changed_.notify_all();
    if (item.second) break;  // the error surfaces at this bag; nothing after it is read
  }
  {
    std::lock_guard<std::mutex> lock(mutex_);
    reader_done_ = true;
  }
  changed_.notify_all();
}

Bag BagLoader::next() {
  std::unique_lock<std::mutex> lock(mutex_);
  if (pending_ == 0) throw Error("BagLoader::next() called with no bags left in the pass");
  changed_.wait(lock, [&] { return !ready_.empty() || reader_done_; });
  if (ready_.empty()) throw Error("the bag reader stopped early");
  auto item = std::move(ready_.front());
  ready_.pop_front();
  --pending_;
  lock.unlock();
  changed_.notify_all();
  if (item.second) std::rethrow_exception(item.second);
  return std::move(item.first);
}

bool BagLoader::has_next() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return pending_ > 0;
}

int64_t BagLoader::cached_bags() const {
  std::lock_guard<std::mutex> lock(mutex_);
  int64_t n = 0;
  for (const auto& t : cache_) n += t.defined() ? 1 : 0;
  return n;
}

int64_t BagLoader::cache_bytes() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return cache_bytes_;
}

}  // namespace mil
