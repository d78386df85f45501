#include "mil/train/optimizer.hpp"

#include <cmath>
#include <sstream>

#include "mil/util/error.hpp"

namespace mil {

std::unique_ptr<torch::optim::Adam> make_adam(std::vector<torch::Tensor> params, const OptimizerConfig& cfg) {
  auto opts = torch::optim::AdamOptions(cfg.lr).betas({cfg.beta1, cfg.beta2}).weight_decay(cfg.weight_decay);
  return std::make_unique<torch::optim::Adam>(std::move(params), opts);
}

double cosine_lr(const OptimizerConfig& cfg, int64_t epoch, int64_t total_epochs) {
  if (total_epochs <= 0) return cfg.lr;
  const double pi = std::acos(-1.0);
  return cfg.min_lr + (cfg.lr - cfg.min_lr) * (1.0 + std::cos(pi * static_cast<double>(epoch) / total_epochs)) / 2.0;
}

void set_lr(torch::optim::Adam& opt, double lr) {
  for (auto& group : opt.param_groups()) static_cast<torch::optim::AdamOptions&>(group.options()).lr(lr);
}

std::string save_optimizer_state(torch::optim::Optimizer& opt) {
  torch::serialize::OutputArchive archive;
  opt.save(archive);
  std::ostringstream out;
  archive.save_to(out);
  return out.str();
}

void load_optimizer_state(torch::optim::Optimizer& opt, const std::string& bytes, const std::string& source) {
  try {
    std::istringstream in(bytes);
    torch::serialize::InputArchive archive;
    archive.load_from(in);
    opt.load(archive);
  } catch (const c10::Error& e) {
    throw Error(source, "optimizer state", std::string("cannot be restored: ") + e.what_without_backtrace());
  }
}

}  // namespace mil
