#pragma once
// What the two hand-written steps (DsmilStep, one bag; PackedStep, several) share: the loss with libtorch ops
// (the CPU's scalar form is mil/model/loss.hpp's dsmil_loss_of_logits) and the workspace buffers their passes
// write into.
#include <torch/torch.h>

#include <algorithm>
#include <cmath>

#include "mil/model/dsmil.hpp"
#include "mil/model/loss.hpp"
#include "mil/model/row_ops.hpp"
#include "mil/model/segment_ops.hpp"

namespace mil::step_math {

constexpr int64_t kH = ModelConfig::kQueryDim;

// The loss with libtorch ops where the logits lie (the GPU's way: no host round trip), for B bags of C
// classes: bag_logits, max_logits and targets [B, C]. Writes the gradients w.r.t. both logits into d_bag and
// d_max ([B, C] views: 0.5 / C * (sigmoid(x) - t)) and returns each bag's loss, 0.5 * mean over classes of each
// BCE, as [B] float64.
inline torch::Tensor loss_and_gradients_torch(const torch::Tensor& bag_logits, const torch::Tensor& max_logits,
                                              const torch::Tensor& targets, torch::Tensor d_bag, torch::Tensor d_max) {
  const double half_mean = 0.5 / static_cast<double>(bag_logits.size(1));
  at::sigmoid_out(d_bag, bag_logits);
  d_bag.sub_(targets).mul_(half_mean);
  at::sigmoid_out(d_max, max_logits);
  d_max.sub_(targets).mul_(half_mean);
  const auto none = at::Reduction::None;
  const torch::Tensor loss = torch::binary_cross_entropy_with_logits(bag_logits, targets, {}, {}, none).sum(1) +
                             torch::binary_cross_entropy_with_logits(max_logits, targets, {}, {}, none).sum(1);
  return (loss * half_mean).to(torch::kDouble);
}

// A [rows, cols] contiguous view of `buf`, grown (never shrunk) to fit. One as_strided, not narrow and view:
// each of libtorch's view ops costs 0.3-0.8 us, which adds up on small bags.
inline torch::Tensor workspace(torch::Tensor& buf, int64_t rows, int64_t cols, const torch::TensorOptions& opts) {
  const int64_t n = rows * cols;
  if (!buf.defined() || buf.numel() < n) buf = torch::empty({n}, opts);
  return buf.as_strided({rows, cols}, {cols, 1});
}

// Views of a float32 CPU matrix (rows with unit column stride) for the loops of segment_ops and row_ops.
inline segment::Rows rows(const torch::Tensor& m) {
  return {m.data_ptr<float>(), m.stride(0)};
}

inline segment::MutRows mut_rows(const torch::Tensor& m) {
  return {m.data_ptr<float>(), m.stride(0)};
}

inline row_ops::Block block(const torch::Tensor& m) {
  return {m.data_ptr<float>(), m.size(0), m.size(1), m.stride(0)};
}

}  // namespace mil::step_math
