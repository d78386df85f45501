#include "mil/data/feature_statistics.hpp"

#include <numeric>
#include <vector>

#include "mil/data/bag_loader.hpp"

namespace mil {

std::pair<torch::Tensor, torch::Tensor> feature_statistics(const BagIndex& train, const std::string& features_key,
                                                           int prefetch) {
  BagLoader loader(train, {features_key, prefetch, CacheMode::kNone, false});
  std::vector<int64_t> order(train.bags.size());
  std::iota(order.begin(), order.end(), 0);
  loader.start(order);
  torch::Tensor sum = torch::zeros({train.feature_dim}, torch::kDouble);
  torch::Tensor sum_sq = torch::zeros({train.feature_dim}, torch::kDouble);
  int64_t n = 0;
  for (size_t i = 0; i < order.size(); ++i) {
    const torch::Tensor x = loader.next().features.to(torch::kDouble);
    sum += x.sum(0);
    sum_sq += (x * x).sum(0);
    n += x.size(0);
  }
  const torch::Tensor mean = sum / n;
  torch::Tensor var = (sum_sq / n - mean * mean).clamp_min(0);
  torch::Tensor std = var.sqrt();
  std = torch::where(std > 1e-12, std, torch::ones_like(std));
  return {mean.to(torch::kFloat), std.to(torch::kFloat)};
}

}  // namespace mil
