#include "mil/model/packed_step.hpp"

#include <ATen/CPUGeneratorImpl.h>

#include <cmath>
#include <mutex>
#include <string>

#include "mil/model/segment_ops.hpp"
#include "mil/model/step_math.hpp"
#include "mil/util/error.hpp"

namespace mil {
namespace {

using namespace step_math;  // shared with the other hand-written step

}  // namespace

PackedStep::PackedStep(FlatParameters& flat, StepPasses passes)
    : flat_(flat),
      cfg_(flat.config()),
      loops_(passes == StepPasses::kAuto && flat.values().device().is_cpu()),
      scale_(std::sqrt(static_cast<double>(kH))) {}

void PackedStep::check(const PackedBags& pack) const {
  const auto bad = [](const std::string& why) { throw Error("", "PackedStep", why); };
  const torch::Tensor& x = pack.x;
  if (x.dim() != 2 || x.size(1) != cfg_.feature_dim || x.scalar_type() != torch::kFloat ||
      x.device() != flat_.values().device() || !x.is_contiguous()) {
    bad("expected a contiguous float32 pack [T, " + std::to_string(cfg_.feature_dim) + "] on " +
        flat_.values().device().str() + ", got " + std::to_string(x.dim()) + "-d with " + std::to_string(x.numel()) +
        " values on " + x.device().str());
  }
  const std::vector<int64_t>& off = pack.offsets;
  if (off.size() < 2 || off.front() != 0 || off.back() != x.size(0)) {
    bad("offsets must run from 0 to the pack's " + std::to_string(x.size(0)) + " rows");
  }
  for (size_t b = 0; b + 1 < off.size(); ++b) {
    if (off[b + 1] <= off[b]) bad("bag " + std::to_string(b) + " has no instances");
  }
  const int64_t bags = static_cast<int64_t>(off.size()) - 1;
  if (pack.targets.numel() != bags * cfg_.num_classes) {
    bad("targets hold " + std::to_string(pack.targets.numel()) + " values for " + std::to_string(bags) + " bags of " +
        std::to_string(cfg_.num_classes) + " classes");
  }
  if (cfg_.passing_v && cfg_.dropout_v > 0 && static_cast<int64_t>(pack.dropout_seeds.size()) != bags) {
    bad("node dropout needs one seed per bag");
  }
}

torch::Tensor PackedStep::accumulate(const PackedBags& pack) {
  check(pack);
  torch::NoGradGuard no_grad;
  off_ = pack.offsets;
  if (!loops_) segs_ = std::make_unique<segment_torch::Segments>(off_, cfg_.num_classes, pack.x.device());
  forward(pack);
  torch::Tensor losses = loss_and_gradients(pack.targets);
  backward(pack);
  return losses;
}

torch::Tensor PackedStep::attention(int64_t b) const {
  const int64_t c = cfg_.num_classes;
  const int64_t n = off_.at(static_cast<size_t>(b + 1)) - off_.at(static_cast<size_t>(b));
  return fwd_.attention_blocks.narrow(0, c * off_[static_cast<size_t>(b)], c * n).view({c, n}).t();
}

void PackedStep::forward(const PackedBags& pack) {
  const torch::Tensor& x = pack.x;
  const int64_t t = x.size(0);
  const int64_t bags = static_cast<int64_t>(off_.size()) - 1;
  const int64_t c = cfg_.num_classes;
  const int64_t d = cfg_.feature_dim;
  const torch::TensorOptions opts = x.options();
  const DsmilTensors& w = flat_.value_views();

  // Instance logits and q's first layer in one GEMM over the pack; then each bag's max-pool.
  torch::Tensor z = workspace(z_, t, c + kH, opts);
  at::addmm_out(z, w.b_in, x, w.w_in.t());
  torch::Tensor max_val = workspace(max_val_, bags, c, opts);
  torch::Tensor max_idx = workspace(max_idx_, bags, c, opts.dtype(torch::kLong));
  max_pool(z, max_val, max_idx);
  torch::Tensor z1 = z.narrow(1, c, kH);
  q_now_ = z1;
  if (cfg_.nonlinear_q) {
    loops_ ? row_ops::relu_inplace(block(z1)) : void(z1.relu_());
    q_now_ = workspace(q_, t, kH, opts);
    at::addmm_out(q_now_, w.b_q2, z1, w.w_q2.t());
    loops_ ? row_ops::tanh_inplace(block(q_now_)) : void(q_now_.tanh_());
  }
  torch::Tensor qc = workspace(qc_, bags * c, kH, opts);
  at::index_select_out(qc, q_now_, 0, max_idx.view({bags * c}));
  fwd_.instance_logits = z.narrow(1, 0, c);
  fwd_.max_logits = max_val;
  fwd_.critical = max_idx;
  attention(qc);

  xv_now_ = x;
  v_now_ = x;
  if (cfg_.passing_v) {
    if (cfg_.dropout_v > 0) {
      xv_now_ = workspace(xv_, t, d, opts);
      at::Generator gen = at::globalContext().defaultGenerator(x.device());
      for (int64_t b = 0; b < bags; ++b) {
        {
          std::lock_guard<std::mutex> lock(gen.mutex());
          gen.set_current_seed(pack.dropout_seeds[static_cast<size_t>(b)]);
        }
        const int64_t n = off_[b + 1] - off_[b];
        xv_now_.narrow(0, off_[b], n).copy_(torch::dropout(x.narrow(0, off_[b], n), cfg_.dropout_v, true));
      }
    }
    v_now_ = workspace(v_, t, d, opts);
    at::addmm_out(v_now_, w.b_v, xv_now_, w.w_v.t());
    if (cfg_.value_relu) v_now_.relu_();
  }
  torch::Tensor bag_rep = workspace(bag_rep_, bags, c * d, opts);
  pool(bag_rep);
  torch::Tensor bag_logits = workspace(bag_logits_, bags, c, opts);
  at::addmm_out(bag_logits, w.b_bag, bag_rep, w.w_bag.t());
  fwd_.bag_logits = bag_logits;
  fwd_.bag_rep = bag_rep.view({bags, c, d});
}

void PackedStep::max_pool(const torch::Tensor& z, torch::Tensor& max_val, torch::Tensor& max_idx) {
  if (loops_) {
    segment::max_pool(rows(z), cfg_.num_classes, off_, max_val.data_ptr<float>(), max_idx.data_ptr<int64_t>());
  } else {
    segment_torch::max_pool(z.narrow(1, 0, cfg_.num_classes), *segs_, max_val, max_idx);
  }
}

void PackedStep::attention(const torch::Tensor& qc) {
  const int64_t c = cfg_.num_classes;
  const int64_t t = q_now_.size(0);
  if (loops_) {
    torch::Tensor a = workspace(a_, 1, c * t, qc.options()).view({c * t});
    segment::attention(rows(q_now_), qc.data_ptr<float>(), kH, c, off_, scale_, a.data_ptr<float>());
    fwd_.attention_blocks = a;
  } else {
    a_rows_ = segment_torch::attention(q_now_, qc, *segs_, scale_, qc_rows_);
    fwd_.attention_blocks = segment_torch::to_blocks(a_rows_, *segs_);
  }
}

void PackedStep::pool(torch::Tensor& bag_rep) {
  if (loops_) {
    segment::pool(fwd_.attention_blocks.data_ptr<float>(), rows(v_now_), cfg_.feature_dim, cfg_.num_classes, off_,
                  bag_rep.data_ptr<float>());
  } else {
    segment_torch::pool(a_rows_, v_now_, *segs_, bag_rep);
  }
}

torch::Tensor PackedStep::loss_and_gradients(const torch::Tensor& targets) {
  if (!loops_) return loss_and_gradients_on_device(targets);
  const int64_t bags = static_cast<int64_t>(off_.size()) - 1;
  const int64_t c = cfg_.num_classes;
  const torch::Tensor t = targets.to(torch::kCPU, torch::kDouble).contiguous();
  const float* pb = fwd_.bag_logits.data_ptr<float>();
  const float* pm = fwd_.max_logits.data_ptr<float>();
  const double* pt = t.data_ptr<double>();
  torch::Tensor d_out = workspace(d_out_, 2, bags * c, fwd_.bag_logits.options());
  float* g_bag = d_out.data_ptr<float>();
  float* g_max = g_bag + bags * c;
  torch::Tensor losses = torch::empty({bags}, torch::kDouble);
  double* pl = losses.data_ptr<double>();
  for (int64_t b = 0; b < bags; ++b) {
    const int64_t i = b * c;
    pl[b] = dsmil_loss_of_logits(c, pb + i, pm + i, pt + i, g_bag + i, g_max + i);
  }
  return losses;
}

// The same with libtorch ops where the logits lie (a GPU's: no host round trip).
torch::Tensor PackedStep::loss_and_gradients_on_device(const torch::Tensor& targets) {
  const int64_t bags = static_cast<int64_t>(off_.size()) - 1;
  const int64_t c = cfg_.num_classes;
  const torch::Tensor t = targets.to(fwd_.bag_logits.options()).reshape({bags, c});
  const torch::Tensor d_out = workspace(d_out_, 2, bags * c, fwd_.bag_logits.options());
  return loss_and_gradients_torch(fwd_.bag_logits, fwd_.max_logits, t, d_out.select(0, 0).view({bags, c}),
                                  d_out.select(0, 1).view({bags, c}));
}

void PackedStep::backward(const PackedBags& pack) {
  const torch::Tensor& x = pack.x;
  const int64_t t = x.size(0);
  const int64_t bags = static_cast<int64_t>(off_.size()) - 1;
  const int64_t c = cfg_.num_classes;
  const int64_t d = cfg_.feature_dim;
  const torch::TensorOptions opts = x.options();
  DsmilTensors& g = flat_.bag_grad_views();  // written, not added to: this pack's gradient alone
  const torch::Tensor d_out = d_out_.narrow(0, 0, 2 * bags * c).view({2, bags, c});
  if (!ones_.defined() || ones_.numel() < t) ones_ = torch::ones({t}, opts);  // T >= B
  const torch::Tensor ones = ones_.narrow(0, 0, t);  // bias gradients are column sums: (d_out)ᵀ 1

  const torch::Tensor d_bag_rep = bag_classifier_backward(d_out.select(0, 0), g);

  // Each bag's B = A V (dA = dB Vᵀ, dV = Aᵀ dB), softmax and scale, then the scores against the critical
  // queries (rows of q), segment by segment; V's layer over the pack.
  torch::Tensor d_v = cfg_.passing_v ? workspace(d_v_, t, d, opts) : torch::Tensor();
  const torch::Tensor d_z = workspace(d_z_, t, c + kH, opts);
  torch::Tensor d_q = cfg_.nonlinear_q ? workspace(d_q_, t, kH, opts) : d_z.narrow(1, c, kH);
  attention_backward(d_bag_rep, cfg_.passing_v ? &d_v : nullptr, d_q);
  if (cfg_.passing_v) {
    if (cfg_.value_relu) at::threshold_backward_out(d_v, d_v, v_now_, 0);
    at::mm_out(g.w_v, d_v.t(), xv_now_);
    at::mv_out(g.b_v, d_v.t(), ones);
  }
  if (cfg_.nonlinear_q) query_backward(d_q, d_z, ones, g);
  instance_classifier_backward(x, d_out.select(0, 1), d_z, ones, g);
  flat_.add_bag_grads();
}

// The bag classifier over the pack's embeddings, logits = vec(B) Wfᵀ + bf: its gradients, and dB.
torch::Tensor PackedStep::bag_classifier_backward(const torch::Tensor& d_bag, DsmilTensors& g) {
  const int64_t bags = d_bag.size(0);
  const int64_t d = cfg_.feature_dim;
  at::mv_out(g.b_bag, d_bag.t(), ones_.narrow(0, 0, bags));
  at::mm_out(g.w_bag, d_bag.t(), fwd_.bag_rep.view({bags, cfg_.num_classes * d}));
  torch::Tensor d_bag_rep = workspace(d_bag_rep_, bags, cfg_.num_classes * d, d_bag.options());
  at::mm_out(d_bag_rep, d_bag, flat_.value_views().w_bag);
  return d_bag_rep;
}

// q's two layers, q = tanh(z1 W2ᵀ + b2) with z1 = relu(x W1ᵀ + b1): from dq to W2's gradients and dz1 (in d_z).
void PackedStep::query_backward(torch::Tensor& d_q, const torch::Tensor& d_z, const torch::Tensor& ones,
                                DsmilTensors& g) {
  const int64_t t = d_q.size(0);
  const int64_t c = cfg_.num_classes;
  torch::Tensor d_z1 = d_z.narrow(1, c, kH);
  const torch::Tensor z1 = z_.narrow(0, 0, t * (c + kH)).view({t, c + kH}).narrow(1, c, kH);
  if (loops_) {
    row_ops::tanh_grad(block(q_now_), block(d_q), g.b_q2.data_ptr<float>());
  } else {
    at::tanh_backward_out(d_q, d_q, q_now_);
    at::mv_out(g.b_q2, d_q.t(), ones);
  }
  at::mm_out(g.w_q2, d_q.t(), z1);  // z1 holds relu(x W1ᵀ + b1)
  at::mm_out(d_z1, d_q, flat_.value_views().w_q2);
  if (loops_) {
    row_ops::relu_grad(block(z1), block(d_z1), g.b_in.narrow(0, c, kH).data_ptr<float>());
  } else {
    at::threshold_backward_out(d_z1, d_z1, z1, 0);
  }
}

// Each bag's max-pool (the gradient reaches its argmax row of each class only), then the instance classifier
// and q's first layer, one GEMM over the pack.
void PackedStep::instance_classifier_backward(const torch::Tensor& x, const torch::Tensor& d_max,
                                              const torch::Tensor& d_z, const torch::Tensor& ones, DsmilTensors& g) {
  const int64_t c = cfg_.num_classes;
  const int64_t bags = d_max.size(0);
  torch::Tensor d_logits = d_z.narrow(1, 0, c);
  d_logits.zero_();
  if (loops_) {
    float* dz = d_z.data_ptr<float>();
    const float* dm = d_max.data_ptr<float>();
    const int64_t* max_idx = fwd_.critical.data_ptr<int64_t>();
    for (int64_t i = 0; i < bags * c; ++i) dz[max_idx[i] * (c + kH) + i % c] = dm[i];
  } else {
    d_logits.scatter_(0, fwd_.critical, d_max);  // d_logits[critical[b, k], k] = d_max[b, k]
  }
  at::mm_out(g.w_in, d_z.t(), x);
  if (loops_ && cfg_.nonlinear_q) {
    torch::Tensor b_logits = g.b_in.narrow(0, 0, c);
    at::sum_out(b_logits, d_max, 0);  // the logits' columns of d_z hold d_max only
  } else {
    at::mv_out(g.b_in, d_z.t(), ones);
  }
}

void PackedStep::attention_backward(const torch::Tensor& d_bag_rep, torch::Tensor* d_v, torch::Tensor& d_q) {
  const int64_t c = cfg_.num_classes;
  const int64_t d = cfg_.feature_dim;
  if (!loops_) {
    const torch::Tensor d_a = segment_torch::pool_grads(a_rows_, d_bag_rep, v_now_, *segs_, d_v);
    const torch::Tensor d_s = segment_torch::attention_grad_scores(a_rows_, d_a, *segs_, scale_);
    segment_torch::query_grad(d_s, q_now_, qc_rows_, fwd_.critical, *segs_, d_q);
    return;
  }
  const int64_t t = q_now_.size(0);
  const float* a = fwd_.attention_blocks.data_ptr<float>();
  torch::Tensor d_a = workspace(d_a_, 1, c * t, d_bag_rep.options());
  segment::pool_grad_attention(d_bag_rep.data_ptr<float>(), rows(v_now_), d, c, off_, d_a.data_ptr<float>());
  if (d_v != nullptr) segment::pool_grad_values(a, d_bag_rep.data_ptr<float>(), d, c, off_, mut_rows(*d_v));
  segment::attention_grad_scores(a, d_a.data_ptr<float>(), c, off_, scale_);
  segment::query_grad(d_a.data_ptr<float>(), rows(q_now_), qc_.data_ptr<float>(), fwd_.critical.data_ptr<int64_t>(), kH,
                      c, off_, mut_rows(d_q));
}

}  // namespace mil
