#include "mil/model/loss.hpp"

#include "mil/util/check.hpp"

namespace mil {

torch::Tensor dsmil_loss(const DsmilOutput& out, const torch::Tensor& target) {
  const torch::Tensor y = target.reshape({1, -1}).to(out.bag_logits.options());
  const torch::Tensor max_instance = std::get<0>(out.instance_logits.max(0)).view({1, -1});
  namespace F = torch::nn::functional;
  return 0.5 * F::binary_cross_entropy_with_logits(out.bag_logits.view({1, -1}), y) +
         0.5 * F::binary_cross_entropy_with_logits(max_instance, y);
}

std::vector<double> max_instance_logits(const DsmilOutput& out) {
  const torch::Tensor& l = out.instance_logits;
  MIL_CHECK(l.device().is_cpu() && l.scalar_type() == torch::kFloat && l.dim() == 2, "float32 CPU instance logits");
  const int64_t n = l.size(0);
  const int64_t c = l.size(1);
  const float* p = l.data_ptr<float>();
  std::vector<double> m(static_cast<size_t>(c), -INFINITY);
  for (int64_t k = 0; k < c; ++k) {
    double& best = m[static_cast<size_t>(k)];
    for (int64_t r = 0; r < n && !std::isnan(best); ++r) {
      const float v = p[r * l.stride(0) + k * l.stride(1)];
      if (v > best || std::isnan(v)) best = v;
    }
  }
  return m;
}

double dsmil_loss_on_host(const DsmilOutput& out, const std::vector<float>& target) {
  const std::vector<double> top = max_instance_logits(out);
  const int64_t c = out.bag_logits.numel();
  MIL_CHECK(static_cast<int64_t>(target.size()) == c && static_cast<int64_t>(top.size()) == c, "C targets");
  const torch::Tensor bag = out.bag_logits.contiguous();
  return dsmil_loss_of_logits(c, bag.data_ptr<float>(), top.data(), target.data());
}

}  // namespace mil
