#pragma once
// A DSMIL training step written out by hand: forward, the reference loss and backward of one bag as a few
// GEMMs and fused elementwise passes over preallocated workspaces, adding the bag's gradients into a
// FlatParameters gradient buffer. It computes what DsmilNet + dsmil_loss + autograd compute, up to float
// rounding (tests/model/test_dsmil_step.cpp holds it to the autograd model), without autograd's graph:
//  - the critical instances' queries are rows of the queries already computed, not a second pass of q
//    over those instances (their gradient is added to those rows, which is what autograd does via q);
//  - the loss reuses the forward's max over instances, and its gradient reaches the instance classifier
//    through the argmax rows only (the gradient of max): C rows of features scaled, no product over the bag;
//  - the bag classifier's Conv1d over the whole of D is a matrix-vector product, and so are the attention
//    rows' products with the bag (B = A V, dA = dB Vᵀ: one row per class), which a GEMM would pack first.
// Node dropout (passing v with --dropout-node) calls the same torch::dropout as the module, so it draws
// the same mask from the device's default generator.
// Precision::kBFloat16 runs the products over instances (x's products with [Wi; W1] and Wv and their weight
// gradients, q's second layer, the attention pooling) through MixedGemm in bfloat16; the rest stays float32.
#include <torch/torch.h>

#include "mil/model/dsmil.hpp"
#include "mil/model/flat_params.hpp"
#include "mil/model/mixed_gemm.hpp"
#include "mil/model/precision.hpp"
#include "mil/model/segment_ops.hpp"

namespace mil {

// How the step's elementwise and softmax passes run. kAuto: on CPU tensors, fused loops (row_ops,
// segment_ops: a fast vectorised tanh, bias gradients summed in the same pass); elsewhere libtorch ops.
// kTorchOps: libtorch ops everywhere (the GPU's path, which tests also run on CPU).
enum class StepPasses { kAuto, kTorchOps };

class DsmilStep {
 public:
  explicit DsmilStep(FlatParameters& flat, Precision precision = Precision::kFloat32,
                     StepPasses passes = StepPasses::kAuto);

  // Forward, loss and backward of one bag; the bag's gradients are added to flat.grads() (computed alone,
  // then added: FlatParameters::bag_grad_views; zero them per optimiser step with flat.zero_grads()). x: [N, D] float32
  // on the parameters' device, N >= 1 (with bf16, bfloat16 features are used as they are, float32 ones rounded once per
  // bag); target: C values in {0, 1}. Returns the bag's loss.
  double accumulate(const torch::Tensor& x, const torch::Tensor& target);
  // The same, with the loss as a 0-dim float64 tensor on the parameters' device: on a GPU the loss and its
  // gradient are computed there, so the step waits on nothing (read the losses once per optimiser step).
  torch::Tensor accumulate_loss(const torch::Tensor& x, const torch::Tensor& target);

  // The forward pass alone, as DsmilNet computes it in eval mode (no dropout, no gradients), in the step's
  // precision: what validation scores bags with, at a training step's speed. The tensors are views of the
  // step's workspaces (attention [N, C] a transposed one), valid until its next call.
  DsmilOutput forward(const torch::Tensor& x);

  // FLOPs of one instance's forward and backward (multiply-adds count 2; elementwise passes not counted),
  // derived from the layer shapes: what a bench divides by.
  static double forward_flops_per_instance(const ModelConfig& cfg);
  static double backward_flops_per_instance(const ModelConfig& cfg);

 private:
  // What the forward leaves for the backward, as views of this bag: the features as the products read them
  // (bf16: rounded), the values' input (x after node dropout) and the values, z1 (relu'd with nonlinear q), the
  // queries and the attention [C, N].
  struct BagViews {
    torch::Tensor x, xv, v, z1, q, a;
  };
  // Refuses a bag that is not [N >= 1, D].
  void check_bag(const torch::Tensor& x) const;
  // The forward into the workspaces: instance logits and their max (logits_, max_val_, max_idx_), queries,
  // attention a_, values, bag representation and bag logits. `training`: node dropout as the module draws it.
  BagViews forward_pass(const torch::Tensor& x, bool training);
  // The loss and its gradients w.r.t. the bag and max-pooled logits (into d_out_): on the host in float64
  // with the CPU loops, else with libtorch ops on the parameters' device (no host round trip on a GPU).
  double loss_and_gradients_on_host(const torch::Tensor& target);
  torch::Tensor loss_and_gradients_on_device(const torch::Tensor& target);
  void backward(const BagViews& f);
  // The bag classifier, logits = Wf vec(B) + bf, forward (into bag_logits_) and backward (its gradients into g,
  // d_bag_rep_): with the CPU loops as host loops over C x C D values, else libtorch ops.
  void bag_classifier();
  void bag_classifier_backward(DsmilTensors& g);
  torch::Tensor query_backward(const torch::Tensor& q, torch::Tensor& d_q, const torch::Tensor& z1, torch::Tensor& d_z1,
                               DsmilTensors& g);
  void instance_classifier_backward(const torch::Tensor& x, DsmilTensors& g);
  void critical_queries(const torch::Tensor& q);
  torch::Tensor ones(int64_t n);
  // The passes that run as CPU loops or as libtorch ops (loops_): in place on [N, 128] blocks; the attention
  // a = softmax_N(qc qᵀ / sqrt(128)) into a_; and its backward, d_a (overwritten) to d_q through the scores
  // against the critical queries (their rows of q get d(qc) too).
  // The attention pooling bag_rep_ = A V and its gradient w.r.t. A, d_a = d_bag_rep_ Vᵀ.
  void pool(const torch::Tensor& a, const torch::Tensor& v);
  void pool_grad_attention(torch::Tensor& d_a, const torch::Tensor& v);
  // out = m · rhs, float32, for an m of a few rows and a bag-sized rhs: the planned library's product, or
  // BLAS's matrix-vector products.
  void few_rows_mm(const torch::Tensor& out, const torch::Tensor& m, const torch::Tensor& rhs);
  // Whether a float32 bag's pooling runs as segment_ops' loops (small bags whose products are not oneDNN's).
  bool pool_on_host(const torch::Tensor& v) const;
  void relu_inplace(torch::Tensor& t) const;
  void tanh_inplace(torch::Tensor& t) const;
  torch::Tensor attention(const torch::Tensor& q, int64_t n);
  void attention_backward(const torch::Tensor& a, torch::Tensor& d_a, const torch::Tensor& q, torch::Tensor& d_q);

  FlatParameters& flat_;
  ModelConfig cfg_;
  MixedGemm gemm_;            // the products over instances, in the step's precision
  const bool loops_;          // the passes are the CPU loops (kAuto, parameters on the CPU)
  double scale_;              // sqrt(128)
  segment::Offsets one_bag_;  // {0, N}: the current bag as segment_ops' one segment
  // Workspaces, reused across bags.
  torch::Tensor logits_, z_, q_, s_, a_, v_, bag_rep_, bag_logits_, max_val_, max_idx_;
  torch::Tensor d_bag_rep_, d_a_, d_q_, d_qc_, d_z1_, d_v_, ones_;
  torch::Tensor x_critical_;  // [C, D]: each class's critical instance, as the products read x
  torch::Tensor d_out_;       // [2C]: the loss's gradient w.r.t. the bag logits, then w.r.t. the max-pooled ones
  torch::Tensor qc_;
  torch::Tensor xb_, z1b_, d_qb_, d_z1b_;  // bf16: operands, rounded once
  torch::Tensor w_inb_, w_q2b_;            // bf16: the weights, rounded once per step
  torch::Tensor w_q2g_;                    // q.2's weight as this step's products read it (bf16: w_q2b_)
  // Views of the weights as the products read them, made once (libtorch's view ops cost 0.3-0.8 us each, and
  // a tiny bag's step made some 40): [Wi; W1] split and transposed (bf16: of the rounded copy), its two biases,
  // q.2's weight transposed.
  torch::Tensor w_i_t_, w_1_t_, b_i_, b_1_, w_q2_t_;
};

}  // namespace mil
