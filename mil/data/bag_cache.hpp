#pragma once
// Bag features kept in RAM after their first read, keyed by file path, so one cache can serve every
// epoch, every fold of a cross-validation and the validation set alike (a fold's validation bags are
// another fold's training bags). Thread-safe: loaders of different sets may share it.
#include <torch/torch.h>

#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <unordered_set>

namespace mil {

enum class CacheMode {
  kNone,      // read from disk every epoch
  kFloat16,   // keep features in RAM as float16 after the first read (half the memory)
  kFloat32,   // keep them as float32 (exact)
  kBFloat16,  // keep and serve them as bfloat16: what a --precision bf16 step multiplies (no conversion per epoch)
};
CacheMode parse_cache_mode(const std::string& s);  // "none" | "ram" | "ram32" | "auto" (float32) | "gpu" (float16)
// Whether --cache `s` keeps the features on the training device ("gpu") rather than in RAM.
bool cache_on_device(const std::string& s);
// --cache for a --precision bf16 run: any RAM cache keeps bfloat16 (the values the step multiplies).
CacheMode cache_mode_for(const std::string& cache, bool bfloat16);
const char* cache_mode_name(CacheMode mode);  // "float16", "float32", "bfloat16" (log lines)

class BagCache {
 public:
  // budget_bytes: the most feature bytes held; bags that do not fit are read from disk every time (0 = no bound).
  // device: where the kept features live. A GPU: the bags an epoch trains on are on it already, with no copy
  // from the host per bag (float16 ones widened there); bags that find no room there are read from disk.
  explicit BagCache(CacheMode mode, int64_t budget_bytes = 0, torch::Device device = torch::kCPU);
  BagCache(const BagCache&) = delete;
  BagCache& operator=(const BagCache&) = delete;

  CacheMode mode() const { return mode_; }
  const torch::Device& device() const { return device_; }
  bool contains(const std::string& path) const;

  // The features of `path` as float32 [N, D] on device(), or an undefined tensor when they are not cached. A
  // float32 cache returns its own tensor, not a copy: callers must not modify it in place. A float16 cache
  // returns a new tensor, converted on the calling thread (in RAM without the torch thread pool; on a GPU by a
  // kernel). A bfloat16 cache returns its own bfloat16 tensor.
  torch::Tensor find(const std::string& path) const;

  // Takes a bag's float32 features as read from disk (checked finite) and returns what the trainer must use,
  // the same whether or not the bag is kept: with a float16 cache, the values rounded to float16, so every
  // epoch (and a resumed job, whose cache starts cold) trains on the same numbers. A slide with values
  // beyond float16's range (|x| >= 65520, which would round to Inf) is kept and served in float32
  // instead, with a warning naming the file. A bfloat16 cache returns the values rounded to bfloat16
  // (mil::Error naming the file for values beyond its range). The tensor returned is in RAM either way.
  torch::Tensor admit(const std::string& path, torch::Tensor features);

  int64_t bags() const;
  int64_t bytes() const;
  int64_t budget_bytes() const { return budget_; }
  int64_t bags_over_budget() const;  // distinct bags left on disk because the budget was full
  int64_t bags_in_float32() const;   // float16 cache: slides kept in float32 (values beyond float16's range)

 private:
  // Keeps `t` on device_ (under the lock): false when the device has no memory left for it.
  bool keep_on_device(const std::string& path, torch::Tensor& t);

  const CacheMode mode_;
  const int64_t budget_;
  const torch::Device device_;
  mutable std::mutex mutex_;
  std::unordered_map<std::string, torch::Tensor> entries_;  // float16 or float32, by path
  std::unordered_set<std::string> over_budget_;             // paths refused for lack of room
  std::unordered_set<std::string> in_float32_;              // float16 cache: slides kept in float32
  int64_t bytes_ = 0;
  bool device_full_ = false;  // a copy to the device ran out of memory: no more are tried
};

// The features rounded to bfloat16 on the calling thread (no torch thread pool); `path` names the file in
// the mil::Error thrown for values beyond bfloat16's range.
torch::Tensor to_bfloat16(const torch::Tensor& features, const std::string& path);

// The cache dsmil_train's --cache and --cache-budget (GB; 0 = no bound) ask for; null for "none".
std::shared_ptr<BagCache> make_bag_cache(CacheMode mode, double budget_gb);

// --cache gpu: a cache of `mode` on `device`, the training GPU, bounded by --cache-budget (GB of GPU memory),
// which it requires: the step needs the rest. Throws mil::Error when `device` is not a GPU or without a budget.
std::shared_ptr<BagCache> make_device_bag_cache(CacheMode mode, double budget_gb, const torch::Device& device);

// --cache auto, the default: a cache of `mode` (float32: the values read from disk, bit for bit, so results
// equal --cache none; bfloat16 under --precision bf16) bounded by --cache-budget when given, else by half of
// `available_bytes` (the memory free at start) shared among the `ranks_per_host` processes of the job on this host,
// each of which keeps its own. Bags beyond the bound are read from disk each epoch, as without a cache.
std::shared_ptr<BagCache> make_auto_bag_cache(CacheMode mode, double budget_gb, int64_t available_bytes,
                                              int ranks_per_host);

}  // namespace mil
