#pragma once
// bfloat16 x bfloat16 -> float32 products on the CPU through oneDNN's matmul primitive, the bias added inside
// it. Compiled in (DSMIL_HAVE_ONEDNN) only where libtorch itself links the system's oneDNN, Debian's libtorch
// 1.13: one library and one OpenMP pool. There libtorch's bfloat16 mm returns bfloat16 (a second rounding,
// then a widening pass) and builds a primitive on every call (~20 us each, five times a step). Here each
// primitive has run-time shapes, so one per operand layout serves every bag size for the whole run.
// PyPI's wheel carries its own oneDNN inside libtorch; there MixedGemm keeps at::mm (available() is false).
#include <torch/torch.h>

#include <memory>

namespace mil {

class OnednnMatmul {
 public:
  OnednnMatmul();
  ~OnednnMatmul();
  OnednnMatmul(const OnednnMatmul&) = delete;
  OnednnMatmul& operator=(const OnednnMatmul&) = delete;

  // Whether this build has it (else run() must not be called).
  static bool available();
  // Whether run() takes these operands: CPU matrices, a and b bfloat16 with a unit stride in either
  // dimension, out float32 [M, N] with unit column stride, bias undefined or contiguous float32 [N].
  static bool accepts(const torch::Tensor& out, const torch::Tensor& a, const torch::Tensor& b,
                      const torch::Tensor& bias);

  // out = a b, plus bias on every row where it is defined.
  void run(const torch::Tensor& out, const torch::Tensor& a, const torch::Tensor& b, const torch::Tensor& bias);

 private:
  struct Primitives;  // keeps <oneapi/dnnl/dnnl.hpp> out of this header
  std::unique_ptr<Primitives> primitives_;
};

}  // namespace mil
