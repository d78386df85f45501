#pragma once
// A DsmilNet's parameters and gradients, each in one contiguous buffer. The module's parameters become
// views of the value buffer (same names, shapes and .pth keys), so everything that reads or writes them by
// name (state dicts, checkpoints, broadcast, evaluation) still works, while the training step, the
// optimiser and the gradient all-reduce each see one flat tensor.
//
// Layout: the instance classifier's weight is followed by q's first weight, and likewise their biases, so
// that X [N, D] meets both in one GEMM X [Wi; W1]ᵀ (one pass over the bag instead of two).
#include <torch/torch.h>

#include <cstdint>

#include "mil/model/dsmil.hpp"

namespace mil {

// Views into a flat buffer, one per parameter of the model (undefined where the architecture lacks it).
struct DsmilTensors {
  torch::Tensor w_in, b_in;    // [C + 128, D], [C + 128]: i_classifier.fc.0 rows 0..C-1, then q's first Linear
  torch::Tensor w_q2, b_q2;    // [128, 128], [128]: q.2 (nonlinear q only)
  torch::Tensor w_v, b_v;      // [D, D], [D]: v.1 (passing v only)
  torch::Tensor w_bag, b_bag;  // [C, C * D], [C]: fcc (Conv1d weight [C, C, D] flattened)
};

class FlatParameters {
 public:
  // Spare floats after the gradients, so small per-rank values can ride in the gradient all-reduce.
  static constexpr int64_t kSpareSlots = 8;

  // Moves `net`'s current parameter values into one buffer on their device and rebinds the parameters
  // to views of it. `net` must outlive this object and keep its parameters bound (no set_data elsewhere).
  explicit FlatParameters(DsmilNetImpl& net);

  int64_t numel() const { return numel_; }
  const ModelConfig& config() const { return cfg_; }
  torch::Tensor& values() { return values_; }                    // [numel]
  torch::Tensor grads() { return grads_.narrow(0, 0, numel_); }  // [numel]
  torch::Tensor& grads_with_spare() { return grads_; }           // [numel + kSpareSlots]
  const DsmilTensors& value_views() const { return value_views_; }

  // A step's gradient is the sum of its bags' (or packs') gradients, each computed alone and added in order,
  // as the all-reduce sums the ranks' own: 2 ranks train the model of --accumulate 2 to the bit (adding bag
  // after bag into one buffer rounds differently, and a few epochs of Adam can grow that to 1e-5).
  // zero_grads() starts a step. bag_grad_views() is where the next bag's gradient goes, overwriting what is
  // there: the step's gradient itself for the step's first bag, else a scratch buffer that add_bag_grads()
  // then adds to it.
  void zero_grads();
  DsmilTensors& bag_grad_views();
  void add_bag_grads();

 private:
  ModelConfig cfg_;
  int64_t numel_ = 0;
  torch::Tensor values_, grads_, scratch_;
  DsmilTensors value_views_, grad_views_, scratch_views_;
  bool grads_zero_ = true;        // no bag's gradient is in grads_ since zero_grads()
  bool scratch_pending_ = false;  // the last bag_grad_views() was the scratch buffer's
};

}  // namespace mil
