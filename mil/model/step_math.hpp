#pragma once
// What the two hand-written steps (DsmilStep, one bag; PackedStep, several) share: the loss in scalar form
// and the workspace buffers their passes write into.
#include <torch/torch.h>

#include <algorithm>
#include <cmath>

#include "mil/model/dsmil.hpp"
#include "mil/model/row_ops.hpp"
#include "mil/model/segment_ops.hpp"

namespace mil::step_math {

constexpr int64_t kH = ModelConfig::kQueryDim;

// BCEWithLogits as torch computes it (max_val form, stable for large |x|), in double.
inline double bce_with_logits(double x, double t) {
  const double m = std::max(-x, 0.0);
  return (1 - t) * x + m + std::log(std::exp(-m) + std::exp(-x - m));
}

inline double sigmoid(double x) {
  return 1.0 / (1.0 + std::exp(-x));
}

// A [rows, cols] contiguous view of `buf`, grown (never shrunk) to fit.
inline torch::Tensor workspace(torch::Tensor& buf, int64_t rows, int64_t cols, const torch::TensorOptions& opts) {
  const int64_t n = rows * cols;
  if (!buf.defined() || buf.numel() < n) buf = torch::empty({n}, opts);
  return buf.narrow(0, 0, n).view({rows, cols});
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
