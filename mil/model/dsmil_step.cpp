#include "mil/model/dsmil_step.hpp"

#include <algorithm>
#include <cmath>
#include <vector>

#include "mil/model/bf16_bits.hpp"
#include "mil/model/bf16_ops.hpp"
#include "mil/model/step_math.hpp"
#include "mil/util/check.hpp"
#include "mil/util/error.hpp"

namespace mil {
namespace {

using namespace step_math;  // shared with the other hand-written step

// out = m · rhs for an m of a few rows (one per class) and a bag-sized rhs ([N, D] or its transpose), float32,
// through libtorch's BLAS: row by row as matrix-vector products. A GEMM with so few rows packs the whole bag
// first: 4-12x slower at D = 1024, N >= 1000 (measured with libtorch 1.13 and OpenBLAS), which was a tenth of
// the step. (oneDNN's product runs such shapes at memory speed as they are.)
void few_rows_mv(torch::Tensor out, const torch::Tensor& m, const torch::Tensor& rhs) {
  if (m.size(0) > 4) {
    at::mm_out(out, m, rhs);
    return;
  }
  for (int64_t k = 0; k < m.size(0); ++k) {
    torch::Tensor row = out.select(0, k);
    at::mv_out(row, rhs.t(), m.select(0, k));
  }
}

// The bits of a bfloat16 CPU tensor, as bf16_ops and row_ops write them.
uint16_t* bits(const torch::Tensor& m) {
  return reinterpret_cast<uint16_t*>(m.data_ptr<at::BFloat16>());
}

// The largest float32 values matrix (N x D) whose attention pooling and its gradient run as segment_ops'
// loops on the caller's thread when the bag's products are not oneDNN's: below it, the four libtorch calls
// of few_rows_mv per class (views, matrix-vector products) cost more than the arithmetic.
constexpr int64_t kHostPoolValues = int64_t{1} << 14;

// A bfloat16 CPU matrix with unit column stride, as bf16_ops reads it.
bf16_ops::Rows16 rows16(const torch::Tensor& m) {
  return {bits(m), m.stride(0)};
}

}  // namespace

DsmilStep::DsmilStep(FlatParameters& flat, Precision precision, StepPasses passes)
    : flat_(flat),
      cfg_(flat.config()),
      gemm_(precision),
      loops_(passes == StepPasses::kAuto && flat.values().device().is_cpu()),
      scale_(std::sqrt(static_cast<double>(kH))) {
  const torch::TensorOptions opts = flat_.values().options();
  const int64_t c = cfg_.num_classes;
  max_val_ = torch::empty({c}, opts);
  max_idx_ = torch::empty({c}, opts.dtype(torch::kLong));
  bag_logits_ = torch::empty({c}, opts);
  d_out_ = torch::empty({2 * c}, opts);
  qc_ = torch::empty({c, kH}, opts);
  d_qc_ = torch::empty({c, kH}, opts);
  bag_rep_ = torch::empty({c, cfg_.feature_dim}, opts);
  d_bag_rep_ = torch::empty({c, cfg_.feature_dim}, opts);
  const DsmilTensors& w = flat_.value_views();
  if (gemm_.bf16()) {
    w_inb_ = torch::empty(w.w_in.sizes(), opts.dtype(torch::kBFloat16));
    if (cfg_.nonlinear_q) w_q2b_ = torch::empty(w.w_q2.sizes(), opts.dtype(torch::kBFloat16));
  }
  const torch::Tensor w_in = gemm_.bf16() ? w_inb_ : w.w_in;
  w_i_t_ = w_in.narrow(0, 0, c).t();
  w_1_t_ = w_in.narrow(0, c, kH).t();
  b_i_ = w.b_in.narrow(0, 0, c);
  b_1_ = w.b_in.narrow(0, c, kH);
  if (cfg_.nonlinear_q) {
    w_q2g_ = gemm_.bf16() ? w_q2b_ : w.w_q2;
    w_q2_t_ = w_q2g_.t();
  }
}

double DsmilStep::forward_flops_per_instance(const ModelConfig& cfg) {
  const double d = static_cast<double>(cfg.feature_dim);
  const double c = static_cast<double>(cfg.num_classes);
  double f = 2 * d * (c + kH);              // [Wi; W1] x
  if (cfg.nonlinear_q) f += 2.0 * kH * kH;  // q.2
  if (cfg.passing_v) f += 2 * d * d;        // v.1
  f += 2 * kH * c;                          // scores against the critical queries
  f += 2 * c * d;                           // bag representation Aᵀ V
  return f;
}

double DsmilStep::backward_flops_per_instance(const ModelConfig& cfg) {
  const double d = static_cast<double>(cfg.feature_dim);
  const double c = static_cast<double>(cfg.num_classes);
  double f = 2 * c * d;                           // dA = dB Vᵀ
  if (cfg.passing_v) f += 2 * c * d + 2 * d * d;  // dV = A dB, dWv
  f += 2 * 2 * kH * c;                            // dQ and d(critical queries)
  if (cfg.nonlinear_q) f += 2 * 2.0 * kH * kH;    // dW2 and dH
  f += 2 * d * (c + kH);                          // d[Wi; W1]
  return f;
}

double DsmilStep::accumulate(const torch::Tensor& x, const torch::Tensor& target) {
  if (!loops_) return accumulate_loss(x, target).item<double>();
  check_bag(x);
  torch::NoGradGuard no_grad;
  const BagViews f = forward_pass(x, /*training=*/true);
  const double loss = loss_and_gradients_on_host(target);
  backward(f);
  return loss;
}

torch::Tensor DsmilStep::accumulate_loss(const torch::Tensor& x, const torch::Tensor& target) {
  if (loops_) return torch::scalar_tensor(accumulate(x, target), torch::kDouble);
  check_bag(x);
  torch::NoGradGuard no_grad;
  const BagViews f = forward_pass(x, /*training=*/true);
  torch::Tensor loss = loss_and_gradients_on_device(target);
  backward(f);
  return loss;
}

DsmilOutput DsmilStep::forward(const torch::Tensor& x) {
  check_bag(x);
  torch::NoGradGuard no_grad;
  const BagViews f = forward_pass(x, /*training=*/false);
  const int64_t n = x.size(0);
  const int64_t c = cfg_.num_classes;
  DsmilOutput out;
  out.instance_logits = logits_.as_strided({n, c}, {c, 1});
  out.bag_logits = bag_logits_.view({1, c});
  out.attention = f.a.t();
  out.bag_representation = bag_rep_.view({1, c, cfg_.feature_dim});
  return out;
}

void DsmilStep::check_bag(const torch::Tensor& x) const {
  const int64_t d = cfg_.feature_dim;
  if (x.dim() != 2 || x.size(1) != d || x.size(0) < 1) {
    throw Error("", "DsmilStep",
                "expected a bag [N >= 1, " + std::to_string(d) + "], got " + std::to_string(x.dim()) + "-d with " +
                    std::to_string(x.numel()) + " values");
  }
  MIL_CHECK(gemm_.bf16() || x.scalar_type() == torch::kFloat, "float32 features for an fp32 step");
}

DsmilStep::BagViews DsmilStep::forward_pass(const torch::Tensor& x, bool training) {
  const int64_t n = x.size(0);
  const int64_t c = cfg_.num_classes;
  const int64_t d = cfg_.feature_dim;
  gemm_.plan_bag(n * d * (c + kH));  // the largest product: x [Wi; W1]ᵀ
  const torch::TensorOptions opts = x.options().dtype(torch::kFloat);
  const DsmilTensors& w = flat_.value_views();
  BagViews f;
  // bf16: the features rounded once per bag (bfloat16 features, as the bf16 RAM cache serves them, as they are).
  f.x = gemm_.bf16() ? MixedGemm::to_bf16(x, xb_) : x;
  if (gemm_.bf16()) {  // the weights the products read, rounded once per step (q.2's serves forward and backward)
    MixedGemm::round_into(w.w_in, w_inb_);
    if (cfg_.nonlinear_q) MixedGemm::round_into(w.w_q2, w_q2b_);
  }

  // Instance logits and q's first layer: x times the rows of [Wi; W1], as two products. One of C + 128 columns
  // ran 10-14% longer than one of 128 plus one of C on oneDNN (bench/README.md, tenth session).
  const torch::Tensor logits = workspace(logits_, n, c, opts);
  gemm_.mm(logits, f.x, w_i_t_, b_i_);
  f.z1 = workspace(z_, n, kH, opts);
  gemm_.mm(f.z1, f.x, w_1_t_, b_1_);
  one_bag_ = {0, n};
  if (loops_) {
    segment::max_pool(rows(logits), c, one_bag_, max_val_.data_ptr<float>(), max_idx_.data_ptr<int64_t>());
  } else {
    at::max_out(max_val_, max_idx_, logits, 0);  // the critical instances and the loss's max pooling
  }
  f.q = f.z1;
  if (cfg_.nonlinear_q) {
    f.q = workspace(q_, n, kH, opts);
    if (gemm_.bf16() && loops_) {
      gemm_.mm(f.q, MixedGemm::relu_to_bf16(f.z1, z1b_), w_q2_t_, w.b_q2);  // relu and rounding in one pass
    } else {
      relu_inplace(f.z1);
      gemm_.mm(f.q, gemm_.bf16() ? MixedGemm::to_bf16(f.z1, z1b_) : f.z1, w_q2_t_, w.b_q2);
    }
    tanh_inplace(f.q);
  }
  critical_queries(f.q);
  f.a = attention(f.q, n);

  f.xv = f.x;  // the values' input (node dropout applies to it)
  f.v = f.x;
  if (cfg_.passing_v) {
    if (cfg_.dropout_v > 0) f.xv = torch::dropout(f.x, cfg_.dropout_v, training);
    f.v = workspace(v_, n, d, opts);
    gemm_.mm(f.v, f.xv, w.w_v.t(), w.b_v);
    if (cfg_.value_relu) f.v.relu_();
  }
  pool(f.a, f.v);
  bag_classifier();
  return f;
}

// The CPU loops' loss: the logits are C floats of the host, the gradients are written straight into d_out_.
double DsmilStep::loss_and_gradients_on_host(const torch::Tensor& target) {
  const int64_t c = cfg_.num_classes;
  if (target.numel() != c) {
    throw Error("", "DsmilStep",
                "target has " + std::to_string(target.numel()) + " values, the model " + std::to_string(c));
  }
  // The trainer's targets are CPU float32 rows, read as they are; anything else converted first.
  const bool as_is = target.device().is_cpu() && target.scalar_type() == torch::kFloat && target.is_contiguous();
  const torch::Tensor t = as_is ? target : target.to(torch::kCPU, torch::kFloat).contiguous();
  float* g = d_out_.data_ptr<float>();
  return dsmil_loss_of_logits(c, bag_logits_.data_ptr<float>(), max_val_.data_ptr<float>(), t.data_ptr<float>(), g,
                              g + c);
}

// The GPU's way: libtorch ops where the logits lie, no host round trip.
torch::Tensor DsmilStep::loss_and_gradients_on_device(const torch::Tensor& target) {
  const int64_t c = cfg_.num_classes;
  const torch::Tensor t = target.to(bag_logits_.options()).reshape({-1});
  if (t.numel() != c) {
    throw Error("", "DsmilStep", "target has " + std::to_string(t.numel()) + " values, the model " + std::to_string(c));
  }
  const torch::Tensor loss =
      loss_and_gradients_torch(bag_logits_.view({1, c}), max_val_.view({1, c}), t.reshape({1, c}),
                               d_out_.narrow(0, 0, c).view({1, c}), d_out_.narrow(0, c, c).view({1, c}));
  return loss.reshape({});
}

void DsmilStep::few_rows_mm(const torch::Tensor& out, const torch::Tensor& m, const torch::Tensor& rhs) {
  gemm_.onednn_planned() ? gemm_.mm_fp32(out, m, rhs) : few_rows_mv(out, m, rhs);
}

// Over bfloat16 features (bf16 without passing v) the loops of bf16_ops on the CPU, else oneDNN's product;
// float32 values through few_rows_mm.
void DsmilStep::pool(const torch::Tensor& a, const torch::Tensor& v) {
  if (v.scalar_type() != torch::kBFloat16) {
    if (!pool_on_host(v)) return few_rows_mm(bag_rep_, a, v);
    return segment::pool(a.data_ptr<float>(), rows(v), v.size(1), a.size(0), one_bag_, bag_rep_.data_ptr<float>());
  }
  if (!loops_ || v.stride(1) != 1) return gemm_.mm(bag_rep_, a, v);
  bf16_ops::pool(a.data_ptr<float>(), a.size(0), rows16(v), v.size(0), v.size(1), bag_rep_.data_ptr<float>());
}

void DsmilStep::pool_grad_attention(torch::Tensor& d_a, const torch::Tensor& v) {
  if (v.scalar_type() != torch::kBFloat16) {
    if (!pool_on_host(v)) return few_rows_mm(d_a, d_bag_rep_, v.t());
    return segment::pool_grad_attention(d_bag_rep_.data_ptr<float>(), rows(v), v.size(1), d_a.size(0), one_bag_,
                                        d_a.data_ptr<float>());
  }
  if (!loops_ || v.stride(1) != 1) return gemm_.mm(d_a, d_bag_rep_, v.t());
  bf16_ops::row_dots(d_bag_rep_.data_ptr<float>(), d_a.size(0), rows16(v), v.size(0), v.size(1), d_a.data_ptr<float>());
}

bool DsmilStep::pool_on_host(const torch::Tensor& v) const {
  return loops_ && !gemm_.onednn_planned() && v.stride(1) == 1 && v.numel() <= kHostPoolValues;
}

void DsmilStep::relu_inplace(torch::Tensor& t) const {
  loops_ ? row_ops::relu_inplace(block(t)) : void(t.relu_());
}

void DsmilStep::tanh_inplace(torch::Tensor& t) const {
  loops_ ? row_ops::tanh_inplace(block(t)) : void(t.tanh_());
}

torch::Tensor DsmilStep::attention(const torch::Tensor& q, int64_t n) {
  const int64_t c = cfg_.num_classes;
  torch::Tensor a = workspace(a_, c, n, q.options());
  if (loops_) {
    segment::attention(rows(q), qc_.data_ptr<float>(), kH, c, one_bag_, scale_, a.data_ptr<float>());
  } else {
    torch::Tensor s = workspace(s_, c, n, q.options());
    at::mm_out(s, qc_, q.t());
    s.div_(scale_);
    at::_softmax_out(a, s, 1, false);
  }
  return a;
}

void DsmilStep::attention_backward(const torch::Tensor& a, torch::Tensor& d_a, const torch::Tensor& q,
                                   torch::Tensor& d_q) {
  const int64_t c = a.size(0);
  const int64_t n = a.size(1);
  if (loops_) {
    segment::attention_grad_scores(a.data_ptr<float>(), d_a.data_ptr<float>(), c, one_bag_, scale_);
    segment::query_grad(d_a.data_ptr<float>(), rows(q), qc_.data_ptr<float>(), max_idx_.data_ptr<int64_t>(), kH, c,
                        one_bag_, mut_rows(d_q));
  } else {
    torch::Tensor d_s = workspace(s_, c, n, a.options());
    at::_softmax_backward_data_out(d_s, d_a, a, 1, torch::kFloat);
    d_s.div_(scale_);
    at::mm_out(d_q, d_s.t(), qc_);
    at::mm_out(d_qc_, d_s, q);
    d_q.index_add_(0, max_idx_, d_qc_);
  }
}

void DsmilStep::backward(const BagViews& f) {
  const int64_t n = f.x.size(0);
  const int64_t c = cfg_.num_classes;
  const int64_t d = cfg_.feature_dim;
  const torch::TensorOptions opts = f.z1.options();
  DsmilTensors& g = flat_.bag_grad_views();  // written, not added to: this bag's gradient alone
  bag_classifier_backward(g);

  // B = A V: dA = dB Vᵀ, dV = Aᵀ dB.
  torch::Tensor d_a = workspace(d_a_, c, n, opts);
  pool_grad_attention(d_a, f.v);
  if (cfg_.passing_v) {
    torch::Tensor d_v = workspace(d_v_, n, d, opts);
    gemm_.mm_fp32(d_v, f.a.t(), d_bag_rep_);
    if (cfg_.value_relu) at::threshold_backward_out(d_v, d_v, f.v, 0);
    gemm_.mm(g.w_v, d_v.t(), f.xv);
    few_rows_mm(g.b_v.view({1, d}), ones(n).view({1, n}), d_v);
  }

  torch::Tensor d_z1 = workspace(d_z1_, n, kH, opts);
  torch::Tensor d_q = cfg_.nonlinear_q ? workspace(d_q_, n, kH, opts) : d_z1;
  attention_backward(f.a, d_a, f.q, d_q);  // through the softmax, its scale and the scores against qc
  const torch::Tensor d_z1g = query_backward(f.q, d_q, f.z1, d_z1, g);
  gemm_.mm(g.w_in.narrow(0, c, kH), d_z1g.t(), f.x);
  if (!loops_ || !cfg_.nonlinear_q) {  // else relu_grad summed them
    torch::Tensor d_b1 = g.b_in.narrow(0, c, kH);
    at::mv_out(d_b1, d_z1.t(), ones(n));
  }
  instance_classifier_backward(f.x, g);
  flat_.add_bag_grads();
}

// Ones [n], for bias gradients as column sums ((d_out)ᵀ 1) where no loop sums them.
torch::Tensor DsmilStep::ones(int64_t n) {
  if (!ones_.defined() || ones_.numel() < n) ones_ = torch::ones({n}, bag_rep_.options());
  return ones_.narrow(0, 0, n);
}

// The loss reaches the instance classifier through the max pooling only, so its gradient is that of C rows:
// row k of the weight's is d_max[k] times the features of class k's critical instance (bf16: as rounded), the
// bias's is d_max. (The product over the whole bag that this replaces summed N - 1 zero terms per column.)
void DsmilStep::instance_classifier_backward(const torch::Tensor& x, DsmilTensors& g) {
  const int64_t c = cfg_.num_classes;
  const int64_t d = cfg_.feature_dim;
  if (loops_) {  // C rows on the host, float32 or bfloat16 features
    const float* d_max = d_out_.data_ptr<float>() + c;
    const int64_t* idx = max_idx_.data_ptr<int64_t>();
    float* d_wi = g.w_in.data_ptr<float>();
    for (int64_t k = 0; k < c; ++k) {
      if (x.scalar_type() == torch::kBFloat16) {
        const uint16_t* row = bits(x) + idx[k] * x.stride(0);
        for (int64_t j = 0; j < d; ++j) d_wi[k * d + j] = bf16_bits::to_float(row[j]) * d_max[k];
      } else {
        const float* row = x.data_ptr<float>() + idx[k] * x.stride(0);
        for (int64_t j = 0; j < d; ++j) d_wi[k * d + j] = row[j] * d_max[k];
      }
      g.b_in.data_ptr<float>()[k] = d_max[k];
    }
    return;
  }
  const torch::Tensor d_max = d_out_.narrow(0, c, c);
  torch::Tensor critical = workspace(x_critical_, c, d, x.options());
  at::index_select_out(critical, x, 0, max_idx_);
  torch::Tensor d_wi = g.w_in.narrow(0, 0, c);
  at::mul_out(d_wi, critical, d_max.view({c, 1}));
  g.b_in.narrow(0, 0, c).copy_(d_max);
}

// The critical instances' queries, qc_ = q[max_idx_] (C rows).
void DsmilStep::critical_queries(const torch::Tensor& q) {
  if (!loops_) {
    at::index_select_out(qc_, q, 0, max_idx_);
    return;
  }
  const int64_t* idx = max_idx_.data_ptr<int64_t>();
  float* out = qc_.data_ptr<float>();
  for (int64_t k = 0; k < cfg_.num_classes; ++k) {
    const float* row = q.data_ptr<float>() + idx[k] * q.stride(0);
    std::copy(row, row + kH, out + k * kH);
  }
}

// logits = Wf vec(B) + bf: on the host, C dot products of C D values (libtorch's addmv, dispatch and a bias
// copy, cost more than that on a small bag).
void DsmilStep::bag_classifier() {
  const int64_t cd = bag_rep_.numel();
  const DsmilTensors& p = flat_.value_views();
  if (!loops_) {
    at::addmv_out(bag_logits_, p.b_bag, p.w_bag, bag_rep_.view({cd}));
    return;
  }
  const float* w = p.w_bag.data_ptr<float>();
  const float* b = p.b_bag.data_ptr<float>();
  const float* rep = bag_rep_.data_ptr<float>();
  float* out = bag_logits_.data_ptr<float>();
  for (int64_t k = 0; k < cfg_.num_classes; ++k) {
    float sum = 0;
    for (int64_t j = 0; j < cd; ++j) sum += w[k * cd + j] * rep[j];
    out[k] = b[k] + sum;
  }
}

// Its backward from d_bag (d_out_'s first C values): dbf = d_bag, dWf = d_bag vec(B)ᵀ, d vec(B) = Wfᵀ d_bag.
void DsmilStep::bag_classifier_backward(DsmilTensors& g) {
  const int64_t c = cfg_.num_classes;
  const int64_t cd = bag_rep_.numel();
  const torch::Tensor& w_bag = flat_.value_views().w_bag;
  if (!loops_) {
    const torch::Tensor d_bag = d_out_.narrow(0, 0, c);
    g.b_bag.copy_(d_bag);
    at::outer_out(g.w_bag, d_bag, bag_rep_.view({cd}));
    torch::Tensor d_rep = d_bag_rep_.view({cd});
    at::mv_out(d_rep, w_bag.t(), d_bag);
    return;
  }
  const float* d_bag = d_out_.data_ptr<float>();
  const float* rep = bag_rep_.data_ptr<float>();
  const float* w = w_bag.data_ptr<float>();
  float* g_w = g.w_bag.data_ptr<float>();
  float* d_rep = d_bag_rep_.data_ptr<float>();
  std::fill(d_rep, d_rep + cd, 0.0f);
  for (int64_t k = 0; k < c; ++k) {
    g.b_bag.data_ptr<float>()[k] = d_bag[k];
    for (int64_t j = 0; j < cd; ++j) {
      g_w[k * cd + j] = d_bag[k] * rep[j];
      d_rep[j] += w[k * cd + j] * d_bag[k];
    }
  }
}

// From d_q (nonlinear q: through tanh, q.2 and relu) to d_z1, and the gradients of q.2 and of b1. Returns d_z1
// as the weight gradient's product reads it: in bf16 on the CPU with nonlinear q, rounded by relu's backward
// pass itself, else d_z1. g: this bag's gradient views (FlatParameters::bag_grad_views, taken once per bag).
torch::Tensor DsmilStep::query_backward(const torch::Tensor& q, torch::Tensor& d_q, const torch::Tensor& z1,
                                        torch::Tensor& d_z1, DsmilTensors& g) {
  if (!cfg_.nonlinear_q) return d_z1;  // q = z1: d_q was d_z1
  const int64_t n = d_z1.size(0);
  const int64_t c = cfg_.num_classes;
  const bool fused_rounding = gemm_.bf16() && loops_;
  const torch::TensorOptions opts16 = d_z1.options().dtype(torch::kBFloat16);
  torch::Tensor d_qg = d_q;
  if (fused_rounding) {
    d_qg = workspace(d_qb_, n, kH, opts16);
    row_ops::tanh_grad(block(q), block(d_q), g.b_q2.data_ptr<float>(), {bits(d_qg), kH});
  } else if (loops_) {
    row_ops::tanh_grad(block(q), block(d_q), g.b_q2.data_ptr<float>());
  } else {
    at::tanh_backward_out(d_q, d_q, q);
    at::mv_out(g.b_q2, d_q.t(), ones(n));
  }
  if (gemm_.bf16() && !fused_rounding) d_qg = MixedGemm::to_bf16(d_q, d_qb_);
  // z1 holds relu(x W1ᵀ + b1); bf16: as the forward rounded it.
  const torch::Tensor z1g = gemm_.bf16() ? z1b_.as_strided({n, kH}, {kH, 1}) : z1;
  gemm_.mm(g.w_q2, d_qg.t(), z1g);
  gemm_.mm(d_z1, d_qg, w_q2g_);
  if (!loops_) {
    at::threshold_backward_out(d_z1, d_z1, z1, 0);
    return d_z1;
  }
  const torch::Tensor d_z1b = fused_rounding ? workspace(d_z1b_, n, kH, opts16) : torch::Tensor();
  const row_ops::Rounded rounded = fused_rounding ? row_ops::Rounded{bits(d_z1b), kH} : row_ops::Rounded{};
  row_ops::relu_grad(block(z1), block(d_z1), g.b_in.data_ptr<float>() + c, rounded);
  return fused_rounding ? d_z1b : d_z1;
}

}  // namespace mil
