#pragma once
// A packed training step (--bags-per-step K): K bags concatenated row-wise into one [sum N_b, D] matrix go
// through one forward and backward. What acts on instances alone (the instance classifier with q's first
// layer, q's second layer, v) is one GEMM over the whole pack, forward and backward; what couples a bag's
// instances (the instance max-pool, the critical instances, the attention softmax and the bag embedding)
// runs segment by segment over ragged row ranges (mil/model/segment_ops.hpp: no padding rows, so nothing
// to mask), and the bag classifier is one GEMM over the pack's bag embeddings.
//
// The gradient added is the sum of every bag's own (what DsmilStep::accumulate adds bag after bag), so a
// pack of K bags makes the update of --accumulate K up to float summation order; tests/model/
// test_packed_step.cpp holds it to the autograd model run on each bag alone. Float32. On CPU tensors the
// segment passes are host loops (segment_ops); elsewhere, and with StepPasses::kTorchOps, libtorch ops over a
// segment index (segment_torch_ops), so a pack of small bags fills a GPU in one forward and backward.
#include <torch/torch.h>

#include <cstdint>
#include <memory>
#include <vector>

#include "mil/model/dsmil_step.hpp"
#include "mil/model/flat_params.hpp"
#include "mil/model/segment_torch_ops.hpp"

namespace mil {

struct PackedBags {
  torch::Tensor x;               // [T, D] float32 on the parameters' device: the bags' instances, bag after bag
  std::vector<int64_t> offsets;  // B + 1 rows: bag b is rows [offsets[b], offsets[b + 1]), each >= 1 row
  torch::Tensor targets;         // [B, C], values in {0, 1}
  // With node dropout (passing v, dropout_v > 0): bag b's mask is drawn by torch::dropout on its own rows
  // right after the device's default generator is seeded with dropout_seeds[b], as DsmilStep draws it for
  // the bag alone after the caller seeds the generator with the same number. Unused without node dropout.
  std::vector<uint64_t> dropout_seeds;
};

// Views of the last pack's forward pass (valid until the next accumulate()).
struct PackedForward {
  torch::Tensor instance_logits;   // [T, C]
  torch::Tensor max_logits;        // [B, C]: the instance max-pool
  torch::Tensor critical;          // [B, C] int64: the critical instance of each bag and class, a row of the pack
  torch::Tensor bag_logits;        // [B, C]
  torch::Tensor bag_rep;           // [B, C, D]
  torch::Tensor attention_blocks;  // [C * T]: bag b's [C, N_b] softmax block starts at C * offsets[b]
};

class PackedStep {
 public:
  explicit PackedStep(FlatParameters& flat, StepPasses passes = StepPasses::kAuto);

  // Forward, loss and backward of every bag of the pack; their gradients are added to flat.grads() (zero
  // them per optimiser step). Returns each bag's loss, [B] float64 on the parameters' device (nothing waits
  // for it on a GPU). Throws mil::Error on a malformed pack.
  torch::Tensor accumulate(const PackedBags& pack);
  const PackedForward& last_forward() const { return fwd_; }
  // Bag b's attention of the last pack as [N_b, C], the layout of DsmilOutput::attention.
  torch::Tensor attention(int64_t b) const;

 private:
  void check(const PackedBags& pack) const;
  void forward(const PackedBags& pack);
  torch::Tensor loss_and_gradients(const torch::Tensor& targets);
  torch::Tensor loss_and_gradients_on_device(const torch::Tensor& targets);
  void backward(const PackedBags& pack);
  torch::Tensor bag_classifier_backward(const torch::Tensor& d_bag, DsmilTensors& g);
  void query_backward(torch::Tensor& d_q, const torch::Tensor& d_z, const torch::Tensor& ones, DsmilTensors& g);
  void instance_classifier_backward(const torch::Tensor& x, const torch::Tensor& d_max, const torch::Tensor& d_z,
                                    const torch::Tensor& ones, DsmilTensors& g);
  // The passes that couple a bag's rows, as loops or as libtorch ops (loops_); attention in fwd_.
  void max_pool(const torch::Tensor& z, torch::Tensor& max_val, torch::Tensor& max_idx);
  void attention(const torch::Tensor& qc);
  void pool(torch::Tensor& bag_rep);
  void attention_backward(const torch::Tensor& d_bag_rep, torch::Tensor* d_v, torch::Tensor& d_q);

  FlatParameters& flat_;
  ModelConfig cfg_;
  const bool loops_;  // the segment passes are the CPU loops (kAuto, parameters on the CPU)
  double scale_;      // sqrt(128)
  std::vector<int64_t> off_;
  std::unique_ptr<segment_torch::Segments> segs_;  // the pack's segment index (libtorch ops only)
  torch::Tensor a_rows_, qc_rows_;                 // libtorch ops: attention [T, C], qc per row [T, C, H]
  PackedForward fwd_;
  // Workspaces, grown to the largest pack and reused.
  torch::Tensor z_, q_, qc_, a_, xv_, v_, max_val_, max_idx_, bag_rep_, bag_logits_, d_out_;
  torch::Tensor d_bag_rep_, d_a_, d_v_, d_q_, d_z_, ones_;
  torch::Tensor xv_now_, v_now_, q_now_;  // the current pack's views (x or the workspaces above)
};

}  // namespace mil
