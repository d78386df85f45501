#pragma once
// What dsmil_train does with a bag and with a step, in one place: the model's parameters and gradients
// in flat buffers (FlatParameters), the hand-written forward/backward (DsmilStep) and one fused Adam pass
// (FusedAdam); across ranks one all-reduce of the flat gradient, on a single rank none at all.
#include <torch/torch.h>

#include <memory>
#include <string>
#include <vector>

#include "mil/dist/communicator.hpp"
#include "mil/model/dsmil_step.hpp"
#include "mil/model/flat_params.hpp"
#include "mil/model/packed_step.hpp"
#include "mil/train/fused_adam.hpp"

namespace mil {

class TrainStep {
 public:
  // Rebinds `net`'s parameters to flat buffers (their values unchanged); `net` must outlive this object.
  TrainStep(DsmilNetImpl& net, const OptimizerConfig& cfg, Precision precision = Precision::kFloat32);

  void set_lr(double lr) { adam_.set_lr(lr); }
  void zero_grad() { flat_.zero_grads(); }
  // One bag's forward, loss and backward; its gradients add to the step's. Returns the bag's loss, a 0-dim
  // float64 tensor on the device (nothing waits for it on a GPU: read a step's losses together).
  torch::Tensor accumulate(const torch::Tensor& x, const torch::Tensor& target) {
    return step_.accumulate_loss(x, target);
  }
  // Several bags in one packed forward and backward (--bags-per-step); the sum of their gradients adds to the
  // step's, as accumulate() bag by bag would. Returns each bag's loss, [B] float64 on the device.
  torch::Tensor accumulate_pack(const PackedBags& pack) { return packed_.accumulate(pack); }
  // A bag's eval-mode forward pass in float32 whatever the step's precision (validation scores with it): the
  // hand-written step's, DsmilNet's outputs to 1e-5 without its module calls. Views valid until the next call.
  DsmilOutput forward(const torch::Tensor& x) { return (fp32_step_ ? *fp32_step_ : step_).forward(x); }
  // Ends the step: the gradient summed over ranks (one all-reduce carrying `flags`, which become their sums
  // over ranks; no collective on a single rank), divided by bags_per_step, and the Adam update.
  void finish(Communicator& comm, int64_t bags_per_step, std::vector<float>* flags);

  // One sum over each flat buffer, added (0-dim, on the device): NaN and Inf survive a sum (as Inf or NaN), so
  // when it is finite every parameter and gradient is; when not, finite values may also have summed past 3e38.
  // Nothing waits for it: read it with the step's losses.
  torch::Tensor buffers_sum() { return flat_.values().sum() + flat_.grads().sum(); }

  // Optimiser state for checkpoints; load_state also reads checkpoint format 1's torch::optim::Adam state.
  std::string save_state() const { return adam_.save_state(); }
  void load_state(const std::string& bytes, const std::string& source);

 private:
  DsmilNetImpl& net_;
  FlatParameters flat_;
  DsmilStep step_;
  std::unique_ptr<DsmilStep> fp32_step_;  // forward()'s step when step_ is not float32 (its own workspaces)
  PackedStep packed_;
  FusedAdam adam_;
};

}  // namespace mil
