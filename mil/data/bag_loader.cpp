#include "mil/data/bag_loader.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <cmath>

#include "mil/data/half_convert.hpp"
#include "mil/data/slide_digests.hpp"
#include "mil/io/h5_reader.hpp"
#include "mil/util/error.hpp"

namespace mil {

namespace {

// Index of the first NaN/Inf element of a contiguous float32 tensor, or -1. A plain loop on purpose: it
// runs on the reader thread, and torch ops there would compete with training for libtorch's thread pool.
int64_t first_non_finite(const torch::Tensor& t) {
  const auto* bits = reinterpret_cast<const uint32_t*>(t.data_ptr<float>());
  const int64_t n = t.numel();
  uint32_t all_finite = 1;
  for (int64_t i = 0; i < n; ++i) all_finite &= static_cast<uint32_t>((bits[i] & 0x7f800000u) != 0x7f800000u);
  if (all_finite) return -1;
  for (int64_t i = 0; i < n; ++i) {
    if ((bits[i] & 0x7f800000u) == 0x7f800000u) return i;
  }
  return -1;
}

// Asks the kernel to start reading a file we will need soon, so the device works while we compute.
void read_ahead(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return;  // the real read reports the problem
  ::posix_fadvise(fd, 0, 0, POSIX_FADV_WILLNEED);
  ::close(fd);
}

// A dataset as float32 / int64, converted by plain loops (see read_bag).
torch::Tensor to_float(const torch::Tensor& t) {
  if (t.scalar_type() == torch::kFloat) return t;
  torch::Tensor out = torch::empty(t.sizes(), torch::kFloat);
  if (t.scalar_type() == torch::kHalf) {
    half_to_float(reinterpret_cast<const uint16_t*>(t.data_ptr<at::Half>()), out.data_ptr<float>(), t.numel());
  } else if (t.scalar_type() == torch::kDouble) {
    double_to_float(t.data_ptr<double>(), out.data_ptr<float>(), t.numel());
  } else {
    throw Error("unexpected feature dtype");
  }
  return out;
}

torch::Tensor to_long(const torch::Tensor& t) {
  if (t.scalar_type() == torch::kLong) return t;
  if (t.scalar_type() != torch::kInt) throw Error("unexpected coordinate dtype");
  torch::Tensor out = torch::empty(t.sizes(), torch::kLong);
  const int32_t* src = t.data_ptr<int32_t>();
  int64_t* dst = out.data_ptr<int64_t>();
  for (int64_t i = 0; i < t.numel(); ++i) dst[i] = src[i];
  return out;
}

// Below this chunk size, the system call per chunk costs more than reading the whole file at once.
constexpr int64_t kSmallChunkBytes = 64 << 10;

}  // namespace

Bag read_bag(const BagInfo& info, int64_t index, const std::string& features_key, bool with_coords) {
  const int64_t chunk_bytes = info.chunk_rows * info.feature_dim * 4;
  io::H5Reader file(info.path, info.chunk_rows > 0 && chunk_bytes < kSmallChunkBytes);
  Bag bag;
  bag.index = index;
  const torch::Tensor stored = file.read(features_key);
  bag.digest = feature_digest(stored.data_ptr(), stored.nbytes());  // the file's values, before any conversion
  bag.features = to_float(stored);
  if (bag.features.dim() != 2 || bag.features.size(0) != info.num_instances ||
      bag.features.size(1) != info.feature_dim) {
    throw Error(info.path, features_key, "shape changed since the channel was indexed");
  }
  const int64_t bad = first_non_finite(bag.features);
  if (bad >= 0) {
    const int64_t row = bad / info.feature_dim;
    throw Error(info.path, features_key,
                "contains NaN or Inf values (first in row " + std::to_string(row) + " of " +
                    std::to_string(info.num_instances) + ")");
  }
  if (with_coords && info.has_coords) bag.coords = to_long(file.read("coords"));
  return bag;
}

BagLoader::BagLoader(const BagIndex& index, LoaderOptions options, std::shared_ptr<BagCache> shared_cache)
    : index_(index), options_(std::move(options)), uploader_(options_.device) {
  if (options_.prefetch < 1) throw Error("", "--prefetch", "must be >= 1");
  if (!options_.with_coords) {
    cache_ = std::move(shared_cache);
    if (!cache_ && options_.cache != CacheMode::kNone) cache_ = std::make_shared<BagCache>(options_.cache);
    if (cache_ && cache_->mode() == CacheMode::kNone) cache_.reset();
  }
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
  cached_order_.clear();
  cached_next_ = 0;
}

bool BagLoader::served_by_cache(const std::vector<int64_t>& order) const {
  if (!cache_ || cache_->device() != options_.device) return false;
  const CacheMode mode = cache_->mode();
  const bool as_kept = mode == CacheMode::kBFloat16 || (mode == CacheMode::kFloat32 && !options_.bfloat16);
  if (!as_kept) return false;
  for (int64_t i : order) {
    if (!cache_->contains(index_.bags[static_cast<size_t>(i)].path)) return false;
  }
  return true;
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
  if (served_by_cache(order)) {
    cached_order_ = std::move(order);
    return;
  }
  reader_ = std::thread(&BagLoader::read_loop, this, std::move(order));
}

Bag BagLoader::load(int64_t index, Upload& upload) {
  const BagInfo& info = index_.bags[static_cast<size_t>(index)];
  Bag bag;
  bag.index = index;
  if (cache_) bag.features = cache_->find(info.path);
  if (!bag.features.defined()) {
    bag = read_bag(info, index, options_.features_key, options_.with_coords);
    if (index_.digests) index_.digests->record(info.slide_id, info.path, bag.digest);  // before the cache keeps it
    if (cache_) bag.features = cache_->admit(info.path, std::move(bag.features));
  }
  // A bfloat16 cache serves bfloat16 already; without one (or over its budget) the bag is rounded here.
  if (options_.bfloat16 && bag.features.scalar_type() == torch::kFloat) {
    bag.features = to_bfloat16(bag.features, info.path);
  }
  upload = uploader_.start(bag.features);
  return bag;
}

void BagLoader::read_loop(std::vector<int64_t> order) {
  size_t hinted = 0;  // files up to here have been announced to the kernel
  for (size_t pos = 0; pos < order.size(); ++pos) {
    const int64_t index = order[pos];
    for (; hinted < std::min(order.size(), pos + 1 + static_cast<size_t>(options_.prefetch)); ++hinted) {
      const std::string& path = index_.bags[static_cast<size_t>(order[hinted])].path;
      if (!cache_ || !cache_->contains(path)) read_ahead(path);
    }
    {
      std::unique_lock<std::mutex> lock(mutex_);
      changed_.wait(lock, [&] { return stopping_ || ready_.size() < static_cast<size_t>(options_.prefetch); });
      if (stopping_) return;
    }
    Ready item;
    try {
      item.bag = load(index, item.upload);
    } catch (...) {
      item.error = std::current_exception();
    }
    const bool failed = item.error != nullptr;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      ready_.push_back(std::move(item));
    }
    changed_.notify_all();
    if (failed) break;  // the error surfaces at this bag; nothing after it is read
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
  if (!cached_order_.empty()) {  // a cached pass (a bag gone from the cache since start() is read here)
    --pending_;
    lock.unlock();
    Upload upload;
    Bag bag = load(cached_order_[cached_next_++], upload);
    bag.features = DeviceUploader::arrived(upload);
    return bag;
  }
  changed_.wait(lock, [&] { return !ready_.empty() || reader_done_; });
  if (ready_.empty()) throw Error("the bag reader stopped early");
  Ready item = std::move(ready_.front());
  ready_.pop_front();
  --pending_;
  lock.unlock();
  changed_.notify_all();
  if (item.error) std::rethrow_exception(item.error);
  item.bag.features = DeviceUploader::arrived(item.upload);
  return std::move(item.bag);
}

bool BagLoader::has_next() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return pending_ > 0;
}

int64_t BagLoader::cached_bags() const {
  return cache_ ? cache_->bags() : 0;
}

int64_t BagLoader::cache_bytes() const {
  return cache_ ? cache_->bytes() : 0;
}

}  // namespace mil
