#pragma once
// Adam over one flat parameter buffer and its flat gradient buffer, in one pass: the update of
// torch::optim::Adam (classic Adam, weight decay added to the gradient as torch.optim.Adam does, the
// reference's betas) up to float rounding, without a kernel launch per parameter tensor and per operation.
// The gradient's division by the bags of a step (the mean over them) is folded into the same pass.
#include <torch/torch.h>

#include <cstdint>
#include <string>
#include <vector>

#include "mil/train/optimizer.hpp"

namespace mil {

class FusedAdam {
 public:
  // `params` and `grads`: 1-d float32 tensors of the same length on one device (FlatParameters' buffers).
  FusedAdam(torch::Tensor params, torch::Tensor grads, const OptimizerConfig& cfg);

  void set_lr(double lr) { lr_ = lr; }
  double lr() const { return lr_; }
  int64_t steps_taken() const { return step_; }
  const torch::Tensor& exp_avg() const { return exp_avg_; }
  const torch::Tensor& exp_avg_sq() const { return exp_avg_sq_; }

  // p -= lr * m̂ / (sqrt(v̂) + eps) with g = grads / grad_divisor + weight_decay * p.
  void step(int64_t grad_divisor = 1);

  // The moments and the step count as bytes (a libtorch archive tagged as this optimiser's), and back.
  // load_state also reads what save_optimizer_state wrote for a torch::optim::Adam over `module_params`
  // (checkpoint format 1): each parameter's moments are placed at its offset in the flat buffer, so a
  // checkpoint of an older dsmil_train resumes exactly. Anything else throws mil::Error naming `source`.
  std::string save_state() const;
  void load_state(const std::string& bytes, const std::string& source, const std::vector<torch::Tensor>& module_params);

 private:
  void step_cpu(float grad_scale_divisor, float step_size, float sqrt_bc2);
  void load_torch_adam(const std::string& bytes, const std::string& source,
                       const std::vector<torch::Tensor>& module_params);

  torch::Tensor params_, grads_, exp_avg_, exp_avg_sq_;
  OptimizerConfig cfg_;
  double lr_;
  int64_t step_ = 0;
};

}  // namespace mil
