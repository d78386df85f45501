#include "mil/data/bag_cache.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>

#include "mil/data/half_convert.hpp"
#include "mil/util/error.hpp"

namespace mil {
namespace {

int64_t tensor_bytes(const torch::Tensor& t) {
  return t.numel() * static_cast<int64_t>(t.element_size());
}

}  // namespace

CacheMode parse_cache_mode(const std::string& s) {
  if (s == "none") return CacheMode::kNone;
  if (s == "ram" || s == "gpu") return CacheMode::kFloat16;
  if (s == "ram32" || s == "auto") return CacheMode::kFloat32;
  throw Error("", "--cache", "unknown value '" + s + "' (auto, none, ram, ram32, gpu)");
}

bool cache_on_device(const std::string& s) {
  return s == "gpu";
}

CacheMode cache_mode_for(const std::string& cache, bool bfloat16) {
  const CacheMode mode = parse_cache_mode(cache);
  return bfloat16 && mode != CacheMode::kNone ? CacheMode::kBFloat16 : mode;
}

const char* cache_mode_name(CacheMode mode) {
  switch (mode) {
    case CacheMode::kNone:
      return "none";
    case CacheMode::kFloat16:
      return "float16";
    case CacheMode::kFloat32:
      return "float32";
    case CacheMode::kBFloat16:
      return "bfloat16";
  }
  return "?";
}

BagCache::BagCache(CacheMode mode, int64_t budget_bytes, torch::Device device)
    : mode_(mode), budget_(budget_bytes), device_(device) {
  if (budget_bytes < 0) throw Error("", "--cache-budget", "must be >= 0");
}

bool BagCache::contains(const std::string& path) const {
  std::lock_guard<std::mutex> lock(mutex_);
  return entries_.count(path) > 0;
}

torch::Tensor BagCache::find(const std::string& path) const {
  torch::Tensor kept;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    const auto it = entries_.find(path);
    if (it == entries_.end()) return {};
    kept = it->second;
  }
  if (kept.scalar_type() != torch::kHalf) return kept;  // float32, bfloat16: shared, never modified (see the header)
  if (!kept.device().is_cpu()) return kept.to(torch::kFloat);
  torch::Tensor out = torch::empty(kept.sizes(), torch::kFloat);
  half_to_float(reinterpret_cast<const uint16_t*>(kept.data_ptr<at::Half>()), out.data_ptr<float>(), kept.numel());
  return out;
}

torch::Tensor BagCache::admit(const std::string& path, torch::Tensor features) {
  if (mode_ == CacheMode::kNone) return features;
  torch::Tensor keep = features.contiguous();
  if (mode_ == CacheMode::kBFloat16) {
    keep = to_bfloat16(keep, path);
    features = keep;
  } else if (mode_ == CacheMode::kFloat16) {
    torch::Tensor half = torch::empty(keep.sizes(), torch::kHalf);
    auto* bits = reinterpret_cast<uint16_t*>(half.data_ptr<at::Half>());
    const int64_t overflow = float_to_half(keep.data_ptr<float>(), bits, keep.numel());
    if (overflow > 0) {
      // Float16 would turn these values into Inf and the bag's loss into NaN: keep this slide exact.
      std::lock_guard<std::mutex> lock(mutex_);
      if (in_float32_.insert(path).second) {
        spdlog::warn(
            "[data] {}: {} value(s) beyond float16's range (|x| >= 65520); this slide stays float32 in "
            "the RAM cache",
            path, overflow);
      }
    } else {
      // Served as float16 from now on, so the first read serves the rounded values too (in place: one pass).
      half_to_float(bits, keep.data_ptr<float>(), keep.numel());
      features = keep;
      keep = half;
    }
  }
  std::lock_guard<std::mutex> lock(mutex_);
  if (entries_.count(path) > 0) return features;
  const int64_t size = tensor_bytes(keep);
  if ((budget_ > 0 && bytes_ + size > budget_) || !keep_on_device(path, keep)) {
    over_budget_.insert(path);
    return features;
  }
  bytes_ += size;
  entries_.emplace(path, std::move(keep));
  return features;
}

bool BagCache::keep_on_device(const std::string& path, torch::Tensor& t) {
  if (device_.is_cpu()) return true;
  if (device_full_) return false;
  try {
    t = t.to(device_);
    return true;
  } catch (const c10::Error& e) {
    if (std::string(e.what()).find("out of memory") == std::string::npos) throw;
    // The budget was more than the GPU had: keep what is there, read the rest from disk.
    device_full_ = true;
    spdlog::warn(
        "[data] {}: no GPU memory left for the feature cache at {:.1f} GB ({} bags); the bags that do not "
        "fit are read from disk each epoch (lower --cache-budget)",
        path, static_cast<double>(bytes_) / 1e9, entries_.size());
    return false;
  }
}

int64_t BagCache::bags() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return static_cast<int64_t>(entries_.size());
}

int64_t BagCache::bytes() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return bytes_;
}

int64_t BagCache::bags_over_budget() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return static_cast<int64_t>(over_budget_.size());
}

int64_t BagCache::bags_in_float32() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return static_cast<int64_t>(in_float32_.size());
}

torch::Tensor to_bfloat16(const torch::Tensor& features, const std::string& path) {
  const torch::Tensor src = features.contiguous();
  torch::Tensor out = torch::empty(src.sizes(), torch::kBFloat16);
  const int64_t overflow =
      float_to_bfloat16(src.data_ptr<float>(), reinterpret_cast<uint16_t*>(out.data_ptr<at::BFloat16>()), src.numel());
  if (overflow > 0) {
    throw Error(path, "features",
                std::to_string(overflow) + " value(s) beyond bfloat16's range (|x| > 3.39e38): use --precision fp32");
  }
  return out;
}

std::shared_ptr<BagCache> make_bag_cache(CacheMode mode, double budget_gb) {
  if (mode == CacheMode::kNone) return nullptr;
  return std::make_shared<BagCache>(mode, static_cast<int64_t>(budget_gb * 1e9));
}

std::shared_ptr<BagCache> make_device_bag_cache(CacheMode mode, double budget_gb, const torch::Device& device) {
  if (!device.is_cuda()) {
    throw Error("--cache gpu keeps the features on the training GPU, and this job trains on " + device.str() +
                " (--device): use --cache ram or auto");
  }
  if (budget_gb <= 0) {
    throw Error(
        "--cache gpu needs --cache-budget: the GB of GPU memory the features may take (the training step "
        "needs the rest)");
  }
  return std::make_shared<BagCache>(mode, static_cast<int64_t>(budget_gb * 1e9), device);
}

std::shared_ptr<BagCache> make_auto_bag_cache(CacheMode mode, double budget_gb, int64_t available_bytes,
                                              int ranks_per_host) {
  if (budget_gb > 0) return make_bag_cache(mode, budget_gb);
  // Half: the rest is the model, the largest bag in flight, the loader's read-ahead and the system's page cache.
  const int64_t share = available_bytes / 2 / std::max(1, ranks_per_host);
  if (share <= 0) return nullptr;  // memory unknown: read from disk, as before the cache existed
  return std::make_shared<BagCache>(mode, share);
}

}  // namespace mil
