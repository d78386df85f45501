#pragma once
// The training step's products on the CPU through oneDNN's matmul primitive, float32 result with the bias
// added inside it: bfloat16 x bfloat16 (--precision bf16) and float32 x float32 (fp32). Compiled in
// (DSMIL_HAVE_ONEDNN) only where libtorch itself links the system's oneDNN, Debian's libtorch 1.13: one
// library and one OpenMP pool.
//  - bf16: libtorch's bfloat16 mm returns bfloat16 (a second rounding, then a widening pass) and builds a
//    primitive on every call (~20 us each, five times a step).
//  - fp32: oneDNN's JIT sgemm runs the step's shapes faster than OpenBLAS 0.3.21 on AVX-512 CPUs
//    (bench/README.md). Its kernels move the stack pointer into a heap buffer while they run, so no signal
//    handler may run on a thread that multiplies: install_stop_handlers() keeps signals off those threads.
// Each primitive has run-time shapes, so one per operand type and layout serves every bag size for the whole
// run. PyPI's wheel carries its own oneDNN inside libtorch; there MixedGemm keeps at::mm (available() is
// false).
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
  // Whether run() takes these operands: CPU matrices, a and b both bfloat16 or both float32 with a unit
  // stride in either dimension, out float32 [M, N] with unit column stride, bias undefined or contiguous
  // float32 [N].
  static bool accepts(const torch::Tensor& out, const torch::Tensor& a, const torch::Tensor& b,
                      const torch::Tensor& bias);

  // out = a b, plus bias on every row where it is defined.
  void run(const torch::Tensor& out, const torch::Tensor& a, const torch::Tensor& b, const torch::Tensor& bias);

 private:
  struct Primitives;  // keeps <oneapi/dnnl/dnnl.hpp> out of this header
  std::unique_ptr<Primitives> primitives_;
};

}  // namespace mil
