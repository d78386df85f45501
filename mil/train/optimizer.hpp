#pragma once
#include <torch/torch.h>
#include <torch/version.h>

#include <memory>
#include <string>
#include <vector>

namespace mil {

struct OptimizerConfig {
  double lr = 1e-4;            // initial learning rate
  double weight_decay = 1e-3;  // L2 added to the gradient (classic Adam, not AdamW)
  double beta1 = 0.5;          // the reference's betas
  double beta2 = 0.9;
  double min_lr = 5e-6;  // cosine schedule floor (eta_min)
};

// torch::optim::Adam with the reference settings. libtorch's Adam adds weight_decay * param to the
// gradient, exactly like torch.optim.Adam.
std::unique_ptr<torch::optim::Adam> make_adam(std::vector<torch::Tensor> params, const OptimizerConfig& cfg);

// Cosine annealing in closed form (PyTorch's CosineAnnealingLR): the rate for `epoch` of `total_epochs`.
double cosine_lr(const OptimizerConfig& cfg, int64_t epoch, int64_t total_epochs);

// Sets the learning rate of every parameter group.
void set_lr(torch::optim::Adam& opt, double lr);

// The optimiser's whole state (per-parameter moments and step counts, group options) as bytes, and back
// into an optimiser built over the same parameters in the same order (libtorch's own serialisation, which
// matches saved state to parameters by position). Exact: a restored optimiser steps bit for bit the same.
std::string save_optimizer_state(torch::optim::Optimizer& opt);
void load_optimizer_state(torch::optim::Optimizer& opt, const std::string& bytes, const std::string& source);

// The key of a parameter's entry in torch::optim's state map: its TensorImpl, as text in libtorch 1.x and as
// the pointer itself in 2.x.
inline auto optimizer_state_key(const torch::Tensor& p) {
#if TORCH_VERSION_MAJOR >= 2
  return p.unsafeGetTensorImpl();
#else
  return c10::guts::to_string(p.unsafeGetTensorImpl());
#endif
}

}  // namespace mil
