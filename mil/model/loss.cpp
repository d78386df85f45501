#include "mil/model/loss.hpp"

namespace mil {

torch::Tensor dsmil_loss(const DsmilOutput& out, const torch::Tensor& target) {
  const torch::Tensor y = target.reshape({1, -1}).to(out.bag_logits.options());
  const torch::Tensor max_instance = std::get<0>(out.instance_logits.max(0)).view({1, -1});
  namespace F = torch::nn::functional;
  return 0.5 * F::binary_cross_entropy_with_logits(out.bag_logits.view({1, -1}), y) +
         0.5 * F::binary_cross_entropy_with_logits(max_instance, y);
}

}  // namespace mil
