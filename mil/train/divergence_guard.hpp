#pragma once
// The divergence guard: a training step whose loss, averaged gradient or updated weights are not finite
// (a too-high --lr, an overflow), or whose loss is above 1e12 (logits no learning run comes back from), stops
// the job with a mil::Error naming the fold, epoch, step and slides, before any checkpoint or model holding
// such weights is written. The last checkpoint written stays the last one before it, so a restart resumes
// those weights (and diverges again at the same step, with the same message, rather than training on NaN).
#include <torch/torch.h>

#include <string>
#include <vector>

namespace mil {

// Where a step is, for the message: 0-based fold, 1-based epoch and step.
struct StepPlace {
  int fold = 0;
  int epoch = 0;
  int64_t step = 0;
  int64_t steps = 0;  // per epoch
};

// One bag this rank trained in the step: its file and its loss.
struct StepBag {
  std::string path;
  double loss = 0;
};

// Called after the optimiser step (the gradients of the step are still held): throws mil::Error when a
// bag's loss is not finite or above 1e12, or a parameter's gradient or a parameter is not finite. The file
// is the first bag with such a loss (else the step's first bag); the object is "fold F epoch E step S/N"; the reason
// names the quantity and the parameter that went non-finite. One reduction and one host sync per step. `known_finite`:
// the caller has found every parameter and gradient finite already, more cheaply (TrainStep::finite): only the losses
// are checked then.
void check_step_finite(const torch::OrderedDict<std::string, torch::Tensor>& params, const std::vector<StepBag>& bags,
                       const StepPlace& where, bool known_finite = false);

// After an epoch, on the validation set's scores ([bag][class], in `paths`' order): weights can stay finite
// yet be so large that a forward pass overflows. Throws the same kind of mil::Error, naming the first
// slide whose score is not finite and the epoch's last step, before the epoch's checkpoint is written.
void check_scores_finite(const std::vector<std::vector<double>>& probs, const std::vector<std::string>& paths,
                         const StepPlace& where);

}  // namespace mil
