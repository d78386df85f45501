// OnednnMatmul (the step's products where libtorch links the system's oneDNN) against libtorch computing the
// same products of the same bfloat16 or float32 values in float64: every operand type and layout, with and
// without bias, bag sizes changing from call to call (one primitive serves them all), and a strided output
// view. Skipped in builds without it (PyPI's wheel), where MixedGemm uses at::mm.
#include <gtest/gtest.h>

#include "mil/model/mixed_gemm.hpp"
#include "mil/model/onednn_matmul.hpp"

namespace mil {
namespace {

// A [rows, cols] matrix of `type`, laid out transposed (unit row stride) when asked.
torch::Tensor matrix(int64_t rows, int64_t cols, bool transposed, torch::ScalarType type) {
  const torch::Tensor m = torch::randn({rows, cols}).to(type);
  return transposed ? m.t().contiguous().t() : m;
}

// The float64 product of the operands' own (bfloat16) values; float32 accumulation over K terms of products
// whose sum of magnitudes is bounded by |a| |b| stays within K * 2^-24 of it, relative to that bound.
void expect_product(const torch::Tensor& out, const torch::Tensor& a, const torch::Tensor& b,
                    const torch::Tensor& bias) {
  torch::Tensor expected = at::mm(a.to(torch::kDouble), b.to(torch::kDouble));
  const torch::Tensor magnitude = at::mm(a.to(torch::kDouble).abs(), b.to(torch::kDouble).abs());
  if (bias.defined()) expected += bias.to(torch::kDouble);
  const double k = static_cast<double>(a.size(1));
  const torch::Tensor err = (out.to(torch::kDouble) - expected).abs() - (magnitude + 1) * (k * 0x1p-24);
  EXPECT_LE(err.max().item<double>(), 0) << "a " << a.sizes() << (a.stride(1) != 1 ? " transposed" : "") << ", b "
                                         << b.sizes() << (b.stride(1) != 1 ? " transposed" : "")
                                         << (bias.defined() ? ", bias" : "");
}

TEST(OnednnMatmul, EveryTypeLayoutAndBagSizeMatchesFloat64) {
  if (!OnednnMatmul::available()) GTEST_SKIP() << "this build multiplies with at::mm";
  torch::manual_seed(11);
  OnednnMatmul mm;
  for (const int64_t n : {1000, 7, 1, 2500}) {  // the bag's size: rows of the forward, depth of the gradients
    for (int layout = 0; layout < 8; ++layout) {
      const torch::ScalarType type = (layout & 4) != 0 ? torch::kFloat : torch::kBFloat16;
      const bool a_t = (layout & 1) != 0;
      const bool b_t = (layout & 2) != 0;
      // Forward-like: [n, 96] x [96, 130] + bias. Gradient-like: [130, n] x [n, 96].
      const torch::Tensor a1 = matrix(n, 96, a_t, type), b1 = matrix(96, 130, b_t, type);
      const torch::Tensor bias = torch::randn({130});
      torch::Tensor out1 = torch::full({n, 130}, -3.0f);
      mm.run(out1, a1, b1, bias);
      expect_product(out1, a1, b1, bias);
      const torch::Tensor a2 = matrix(130, n, a_t, type), b2 = matrix(n, 96, b_t, type);
      torch::Tensor wide = torch::full({130, 100}, -3.0f);
      const torch::Tensor out2 = wide.narrow(1, 2, 96);  // rows 100 apart, as the step's views are
      mm.run(out2, a2, b2, {});
      expect_product(out2, a2, b2, {});
      EXPECT_TRUE(torch::equal(wide.narrow(1, 0, 2), torch::full({130, 2}, -3.0f)));  // outside: untouched
      EXPECT_TRUE(torch::equal(wide.narrow(1, 98, 2), torch::full({130, 2}, -3.0f)));
    }
  }
}

TEST(OnednnMatmul, MixedGemmUsesItAndKeepsFloat32Results) {
  if (!OnednnMatmul::available()) GTEST_SKIP() << "this build multiplies with at::mm";
  torch::manual_seed(12);
  MixedGemm gemm(Precision::kBFloat16);
  const torch::Tensor a = torch::randn({300, 64});
  const torch::Tensor w = torch::randn({40, 64});
  const torch::Tensor bias = torch::randn({40});
  torch::Tensor out = torch::empty({300, 40});
  gemm.mm(out, a, w.t(), bias);
  // The operands rounded to bfloat16, the product and bias kept in float32: within float32 accumulation of
  // the float64 product, which a bfloat16-rounded result (2^-9 relative) would not be.
  expect_product(out, a.to(torch::kBFloat16), w.to(torch::kBFloat16).t(), bias);
}

// fp32's products of WSI-sized bags are oneDNN's too (bit for bit what OnednnMatmul returns, which OpenBLAS's
// summation order would not be), bias included, within float32 accumulation of the float64 product: all of
// the bag's products, the few-row ones included (one library per bag). A tiny bag's are libtorch's.
TEST(OnednnMatmul, MixedGemmMultipliesFloat32WithIt) {
  if (!OnednnMatmul::available()) GTEST_SKIP() << "this build multiplies with at::mm";
  torch::manual_seed(13);
  MixedGemm gemm(Precision::kFloat32);
  OnednnMatmul direct;
  const torch::Tensor a = torch::randn({700, 512});
  const torch::Tensor w = torch::randn({130, 512});
  const torch::Tensor bias = torch::randn({130});
  torch::Tensor out = torch::empty({700, 130});
  torch::Tensor expected = torch::empty({700, 130});
  EXPECT_FALSE(gemm.onednn_planned());  // nothing planned yet: libtorch's
  gemm.plan_bag(700 * 512 * 130);
  EXPECT_TRUE(gemm.onednn_planned());
  gemm.mm(out, a, w.t(), bias);
  direct.run(expected, a, w.t(), bias);
  EXPECT_TRUE(torch::equal(out, expected));
  expect_product(out, a, w.t(), bias);
  torch::Tensor grad = torch::empty({130, 512});
  gemm.mm(grad, out.t(), a);  // the weight gradient's layout: a transposed view
  expect_product(grad, out.t(), a, {});
  // One attention row against the bag: small, but this bag's, so oneDNN's.
  const torch::Tensor row = torch::randn({1, 700});
  torch::Tensor pooled = torch::empty({1, 512});
  torch::Tensor pooled_direct = torch::empty({1, 512});
  gemm.mm(pooled, row, a);
  direct.run(pooled_direct, row, a, {});
  EXPECT_TRUE(torch::equal(pooled, pooled_direct));
  // A tiny bag's products stay with libtorch's BLAS, where oneDNN's per-call cost would dominate.
  const torch::Tensor small = a.narrow(0, 0, 13);
  gemm.plan_bag(13 * 512 * 130);
  EXPECT_FALSE(gemm.onednn_planned());
  torch::Tensor out_small = torch::empty({13, 130});
  gemm.mm(out_small, small, w.t(), bias);
  EXPECT_TRUE(torch::equal(out_small, at::addmm(bias, small, w.t())));
}

}  // namespace
}  // namespace mil
