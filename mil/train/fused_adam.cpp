#include "mil/train/fused_adam.hpp"

#include <ATen/Parallel.h>

#include <cmath>
#include <sstream>

#include "mil/util/error.hpp"

namespace mil {
namespace {

constexpr const char* kTag = "dsmil_fused_adam";  // the archive key that marks this optimiser's state
constexpr int64_t kStateVersion = 1;

// One element range of the update, in float as torch's CPU kernels compute it (each double scalar rounded
// to float once). Built for the host's vector units where the compiler can: the loop is the whole cost.
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
__attribute__((target_clones("default", "avx2", "avx512f")))
#endif
void adam_range(float* __restrict p, const float* __restrict g, float* __restrict m, float* __restrict v,
                int64_t begin, int64_t end, float inv_divisor_is_one, float divisor, float wd, float b1,
                float one_minus_b1, float b2, float one_minus_b2, float sqrt_bc2, float eps, float neg_step) {
  for (int64_t i = begin; i < end; ++i) {
    float gi = inv_divisor_is_one != 0.0f ? g[i] : g[i] / divisor;
    gi = gi + wd * p[i];
    m[i] = m[i] * b1 + one_minus_b1 * gi;
    v[i] = v[i] * b2 + one_minus_b2 * (gi * gi);
    const float denom = std::sqrt(v[i]) / sqrt_bc2 + eps;
    p[i] = p[i] + neg_step * (m[i] / denom);
  }
}

}  // namespace

FusedAdam::FusedAdam(torch::Tensor params, torch::Tensor grads, const OptimizerConfig& cfg)
    : params_(std::move(params)), grads_(std::move(grads)), cfg_(cfg), lr_(cfg.lr) {
  if (params_.dim() != 1 || grads_.sizes() != params_.sizes() || params_.scalar_type() != torch::kFloat ||
      !params_.is_contiguous() || !grads_.is_contiguous()) {
    throw Error("", "FusedAdam", "needs contiguous 1-d float32 parameter and gradient buffers of one length");
  }
  exp_avg_ = torch::zeros_like(params_);
  exp_avg_sq_ = torch::zeros_like(params_);
}

void FusedAdam::step(int64_t grad_divisor) {
  if (grad_divisor < 1) throw Error("", "FusedAdam", "grad_divisor must be >= 1, got " + std::to_string(grad_divisor));
  torch::NoGradGuard no_grad;
  ++step_;
  const double bc1 = 1 - std::pow(cfg_.beta1, static_cast<double>(step_));
  const double bc2 = 1 - std::pow(cfg_.beta2, static_cast<double>(step_));
  const double step_size = lr_ / bc1;
  if (params_.device().is_cpu()) {
    step_cpu(static_cast<float>(grad_divisor), static_cast<float>(step_size), static_cast<float>(std::sqrt(bc2)));
    return;
  }
  // Other devices: torch::optim::Adam's operations, over the whole buffer at once.
  torch::Tensor g = grad_divisor > 1 ? grads_ / static_cast<double>(grad_divisor) : grads_;
  g = g.add(params_, cfg_.weight_decay);
  exp_avg_.mul_(cfg_.beta1).add_(g, 1 - cfg_.beta1);
  exp_avg_sq_.mul_(cfg_.beta2).addcmul_(g, g, 1 - cfg_.beta2);
  const torch::Tensor denom = (exp_avg_sq_.sqrt() / std::sqrt(bc2)).add_(1e-8);
  params_.addcdiv_(exp_avg_, denom, -step_size);
}

void FusedAdam::step_cpu(float divisor, float step_size, float sqrt_bc2) {
  float* p = params_.data_ptr<float>();
  const float* g = grads_.data_ptr<float>();
  float* m = exp_avg_.data_ptr<float>();
  float* v = exp_avg_sq_.data_ptr<float>();
  const auto f = [](double x) { return static_cast<float>(x); };
  at::parallel_for(0, params_.numel(), 32768, [&](int64_t begin, int64_t end) {
    adam_range(p, g, m, v, begin, end, divisor == 1.0f ? 1.0f : 0.0f, divisor, f(cfg_.weight_decay), f(cfg_.beta1),
               f(1 - cfg_.beta1), f(cfg_.beta2), f(1 - cfg_.beta2), sqrt_bc2, 1e-8f, -step_size);
  });
}

std::string FusedAdam::save_state() const {
  torch::serialize::OutputArchive archive;
  archive.write(kTag, c10::IValue(kStateVersion));
  archive.write("step", c10::IValue(step_));
  archive.write("exp_avg", exp_avg_.cpu(), /*is_buffer=*/true);
  archive.write("exp_avg_sq", exp_avg_sq_.cpu(), /*is_buffer=*/true);
  std::ostringstream out;
  archive.save_to(out);
  return out.str();
}

void FusedAdam::load_state(const std::string& bytes, const std::string& source,
                           const std::vector<torch::Tensor>& module_params) {
  torch::serialize::InputArchive archive;
  c10::IValue version;
  try {
    std::istringstream in(bytes);
    archive.load_from(in);
  } catch (const c10::Error& e) {
    throw Error(source, "optimizer state", std::string("cannot be read: ") + e.what_without_backtrace());
  }
  if (!archive.try_read(kTag, version)) {
    load_torch_adam(bytes, source, module_params);  // checkpoint format 1
    return;
  }
  if (!version.isInt() || version.toInt() != kStateVersion) {
    throw Error(source, "optimizer state",
                "fused Adam state version " + version.tagKind() + " " +
                    (version.isInt() ? std::to_string(version.toInt()) : "?") + ", this dsmil_train reads version " +
                    std::to_string(kStateVersion));
  }
  c10::IValue step;
  torch::Tensor m, v;
  if (!archive.try_read("step", step) || !step.isInt() || !archive.try_read("exp_avg", m, true) ||
      !archive.try_read("exp_avg_sq", v, true)) {
    throw Error(source, "optimizer state", "incomplete fused Adam state (step, exp_avg, exp_avg_sq)");
  }
  if (m.sizes() != params_.sizes() || v.sizes() != params_.sizes()) {
    throw Error(source, "optimizer state",
                "holds " + std::to_string(m.numel()) + " moments, the model has " + std::to_string(params_.numel()) +
                    " parameters");
  }
  exp_avg_.copy_(m);
  exp_avg_sq_.copy_(v);
  step_ = step.toInt();
}

void FusedAdam::load_torch_adam(const std::string& bytes, const std::string& source,
                                const std::vector<torch::Tensor>& module_params) {
  const auto adam = make_adam(module_params, cfg_);
  load_optimizer_state(*adam, bytes, source);
  torch::NoGradGuard no_grad;
  exp_avg_.zero_();
  exp_avg_sq_.zero_();
  int64_t step = -1;
  const float* base = params_.data_ptr<float>();
  for (const torch::Tensor& p : module_params) {
    const auto it = adam->state().find(optimizer_state_key(p));
    const auto* st = it == adam->state().end() ? nullptr : static_cast<torch::optim::AdamParamState*>(it->second.get());
    const int64_t s = st == nullptr ? 0 : st->step();
    if (step >= 0 && s != step) {
      throw Error(source, "optimizer state",
                  "parameters at different Adam steps (" + std::to_string(step) + " and " + std::to_string(s) +
                      "): not a dsmil_train checkpoint");
    }
    step = s;
    const int64_t offset = p.data_ptr<float>() - base;
    if (offset < 0 || offset + p.numel() > params_.numel()) {
      throw Error("", "FusedAdam", "a module parameter is not a view of the flat parameter buffer");
    }
    if (st != nullptr) {
      exp_avg_.narrow(0, offset, p.numel()).copy_(st->exp_avg().reshape({-1}));
      exp_avg_sq_.narrow(0, offset, p.numel()).copy_(st->exp_avg_sq().reshape({-1}));
    }
  }
  step_ = std::max<int64_t>(step, 0);
}

}  // namespace mil
