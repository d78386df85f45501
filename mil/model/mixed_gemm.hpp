#pragma once
// The training step's matrix products in its Precision, into a float32 output, bias added.
//  - fp32: on the CPU, where the build has it, OnednnMatmul for every product of a bag whose largest product
//    has 2^22 multiply-adds or more (plan_bag; oneDNN's JIT sgemm is faster than OpenBLAS on WSI-sized bags);
//    smaller bags, other builds and devices through the libtorch calls at::addmm_out and at::mm_out.
//    One library per bag, not per product: OpenBLAS's threads and OpenMP's (oneDNN's and the step's loops)
//    spin against each other on the cores when a step alternates between them. A step at N = 1000 whose
//    128-column products stayed on OpenBLAS was 10-25% slower (bench/README.md, tenth session).
//  - bf16: operands rounded to bfloat16 (a bfloat16 operand is used as it is), multiplied with float32
//    accumulation: on the CPU, where the build has it, by OnednnMatmul straight into the float32 output;
//    elsewhere by at::mm (oneDNN on the CPU, cuBLAS on a GPU). libtorch has no bfloat16 x bfloat16 -> float32
//    product, so the result is rounded to bfloat16 once (a relative 2^-9 per element, the same order as
//    rounding the operands) and then widened into the float32 output.
// On the CPU the rounding of operands and the widening (with the bias) are bf16_ops' parallel passes.
// Workspaces are kept and grown, so a step allocates nothing after its largest bag.
#include <torch/torch.h>

#include <memory>

#include "mil/model/onednn_matmul.hpp"
#include "mil/model/precision.hpp"

namespace mil {

class MixedGemm {
 public:
  explicit MixedGemm(Precision p);
  bool bf16() const { return precision_ == Precision::kBFloat16; }

  // Chooses the library for the next bag's float32 products from the multiply-adds of its largest product:
  // oneDNN where the build has it and the bag is large enough to repay its per-call cost. Until the first
  // call, libtorch's.
  void plan_bag(int64_t largest_product);
  bool onednn_planned() const { return onednn_planned_; }

  // out = bias + a b, bias broadcast over rows (undefined: out = a b). out: float32.
  void mm(const torch::Tensor& out, const torch::Tensor& a, const torch::Tensor& b, const torch::Tensor& bias = {});
  // The same in float32 whatever the precision (bf16 steps have a few float32 products too).
  void mm_fp32(const torch::Tensor& out, const torch::Tensor& a, const torch::Tensor& b,
               const torch::Tensor& bias = {});

  // `t` as bfloat16: t itself when it is, else rounded into `ws` (grown to fit). A transposed view of a
  // contiguous tensor stays a transposed view (no transposing copy); other views become contiguous.
  static torch::Tensor to_bf16(const torch::Tensor& t, torch::Tensor& ws);
  // relu(t) in place and its bfloat16 rounding into `ws` (grown to fit), in one pass on the CPU: t is a
  // [rows, cols] float32 matrix with unit column stride.
  static torch::Tensor relu_to_bf16(torch::Tensor& t, torch::Tensor& ws);
  // `src` (float32) rounded into `dst`, a bfloat16 tensor of its shape made beforehand: views of dst taken
  // once stay valid (the step's weights, rounded once per step).
  static void round_into(const torch::Tensor& src, const torch::Tensor& dst);

 private:
  Precision precision_;
  std::unique_ptr<OnednnMatmul> onednn_;  // where the build has it
  bool onednn_planned_ = false;           // the current bag's float32 products go to onednn_
  torch::Tensor a_ws_, b_ws_, out_ws_;    // bf16 operands and result
};

}  // namespace mil
