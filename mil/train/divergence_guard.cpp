#include "mil/train/divergence_guard.hpp"

#include <fmt/format.h>

#include <cmath>

#include "mil/util/error.hpp"

namespace mil {
namespace {

std::string place_text(const StepPlace& w) {
  return "fold " + std::to_string(w.fold) + " epoch " + std::to_string(w.epoch) + " step " + std::to_string(w.step) +
         "/" + std::to_string(w.steps);
}

std::string slides_text(const std::vector<StepBag>& bags) {
  std::string out;
  for (const StepBag& b : bags) out += (out.empty() ? "" : ", ") + b.path;
  return out;
}

// A bag loss this large means logits past it: every probability is exactly 0 or 1, and no step size that
// learns brings them back. The weights behind it can still be finite (saturated, the network dead): with
// --lr 1e30, libtorch's MKL build sits at a loss of ~1e30 for every bag without ever overflowing.
constexpr double kLossBound = 1e12;

bool all_finite(const torch::Tensor& t) {
  return torch::isfinite(t).all().item<bool>();
}

}  // namespace

void check_scores_finite(const std::vector<std::vector<double>>& probs, const std::vector<std::string>& paths,
                         const StepPlace& where) {
  for (size_t i = 0; i < probs.size(); ++i) {
    for (double p : probs[i]) {
      if (std::isfinite(p)) continue;
      throw Error(i < paths.size() ? paths[i] : "", place_text(where),
                  "its validation score is " + std::to_string(p) +
                      ": the training diverged (lower --lr, or check the features); no checkpoint or model was "
                      "written with these weights");
    }
  }
}

void check_step_finite(const torch::OrderedDict<std::string, torch::Tensor>& params, const std::vector<StepBag>& bags,
                       const StepPlace& where, bool known_finite) {
  const std::string advice =
      ": the training diverged (lower --lr, or check the features); no checkpoint or model "
      "was written with these weights";
  for (const StepBag& b : bags) {
    if (std::isfinite(b.loss) && b.loss <= kLossBound) continue;
    const std::string loss =
        std::isfinite(b.loss) ? fmt::format("{:.3g} (above {:.0e})", b.loss, kLossBound) : std::to_string(b.loss);
    throw Error(b.path, place_text(where), "loss is " + loss + advice);
  }
  if (known_finite) return;
  // The common case costs one reduction over every tensor and one sync: the per-tensor search below runs
  // only to name the culprit.
  std::vector<torch::Tensor> flags;
  flags.reserve(2 * params.size());
  for (const auto& item : params) {
    const torch::Tensor& p = item.value();
    flags.push_back(torch::isfinite(p).all());
    if (p.grad().defined()) flags.push_back(torch::isfinite(p.grad()).all());
  }
  if (flags.empty() || torch::stack(flags).all().item<bool>()) return;
  const std::string file = bags.empty() ? "" : bags[0].path;
  const std::string object = place_text(where);
  const std::string of_slides = " (slides of the step on this rank: " + slides_text(bags) + ")";
  for (const auto& item : params) {
    const torch::Tensor& g = item.value().grad();
    if (g.defined() && !all_finite(g)) {
      throw Error(file, object, "the gradient of " + item.key() + " is not finite" + of_slides + advice);
    }
  }
  for (const auto& item : params) {
    if (!all_finite(item.value())) {
      throw Error(file, object, item.key() + " is not finite after the update" + of_slides + advice);
    }
  }
}

}  // namespace mil
