#pragma once
#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "mil/model/dsmil.hpp"

namespace mil {

// BCEWithLogits as torch computes it (max_val form, stable for large |x|), in double: the loss in scalar form,
// as the CPU steps and validation compute it on the host.
inline double bce_with_logits(double x, double t) {
  const double m = std::max(-x, 0.0);
  return (1 - t) * x + m + std::log(std::exp(-m) + std::exp(-x - m));
}

inline double sigmoid(double x) {
  return 1.0 / (1.0 + std::exp(-x));
}

// One bag's reference loss (below) from its C bag logits and C max-pooled instance logits, in double. With
// grad_bag and grad_max (C floats each), its gradient w.r.t. both: 0.5 / C * (sigmoid(x) - t). The CPU steps
// and validation's host scoring all compute it here.
template <class Bag, class Max, class Target>
double dsmil_loss_of_logits(int64_t c, const Bag* bag, const Max* max, const Target* target, float* grad_bag = nullptr,
                            float* grad_max = nullptr) {
  double bag_loss = 0, max_loss = 0;
  for (int64_t k = 0; k < c; ++k) {
    bag_loss += bce_with_logits(bag[k], target[k]);
    max_loss += bce_with_logits(max[k], target[k]);
    if (grad_bag != nullptr) grad_bag[k] = static_cast<float>(0.5 / c * (sigmoid(bag[k]) - target[k]));
    if (grad_max != nullptr) grad_max[k] = static_cast<float>(0.5 / c * (sigmoid(max[k]) - target[k]));
  }
  return 0.5 * bag_loss / c + 0.5 * max_loss / c;
}

// The reference loss: 0.5 * BCEWithLogits(bag logits, y) + 0.5 * BCEWithLogits(max over instances of
// the instance logits, y), each averaged over the C classes. `target` holds C values in {0, 1}.
torch::Tensor dsmil_loss(const DsmilOutput& out, const torch::Tensor& target);

// For float32 CPU outputs, on the host in double: each class's max over instances of the instance logits (a
// NaN wins, as torch::max's), and the reference loss as above. Validation scores every bag with these: a
// dozen libtorch calls per bag cost more than a small bag's forward pass.
std::vector<double> max_instance_logits(const DsmilOutput& out);
double dsmil_loss_on_host(const DsmilOutput& out, const std::vector<float>& target);

}  // namespace mil
