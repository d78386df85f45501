#include "mil/model/mixed_gemm.hpp"

#include "mil/util/check.hpp"

namespace mil {
namespace {

// A contiguous bf16 [sizes] view of `ws`, grown (never shrunk) to fit.
torch::Tensor bf16_view(torch::Tensor& ws, at::IntArrayRef sizes, const torch::Device& device) {
  int64_t n = 1;
  for (int64_t s : sizes) n *= s;
  if (!ws.defined() || ws.numel() < n) ws = torch::empty({n}, torch::TensorOptions(torch::kBFloat16).device(device));
  return ws.narrow(0, 0, n).view(sizes);
}

}  // namespace

torch::Tensor MixedGemm::to_bf16(const torch::Tensor& t, torch::Tensor& ws) {
  if (t.scalar_type() == torch::kBFloat16) return t;
  if (t.dim() == 2 && !t.is_contiguous() && t.t().is_contiguous()) {
    return bf16_view(ws, t.t().sizes(), t.device()).copy_(t.t()).t();
  }
  return bf16_view(ws, t.sizes(), t.device()).copy_(t);
}

torch::Tensor MixedGemm::product(const torch::Tensor& out, const torch::Tensor& a, const torch::Tensor& b) {
  MIL_CHECK(out.scalar_type() == torch::kFloat, "a float32 output");
  torch::Tensor r = bf16_view(out_ws_, out.sizes(), out.device());
  at::mm_out(r, to_bf16(a, a_ws_), to_bf16(b, b_ws_));
  return r;
}

void MixedGemm::mm(const torch::Tensor& out, const torch::Tensor& a, const torch::Tensor& b,
                   const torch::Tensor& bias) {
  torch::Tensor o = out;  // a handle: the _out functions take a non-const reference
  if (!bf16()) {
    if (bias.defined()) {
      at::addmm_out(o, bias, a, b);
    } else {
      at::mm_out(o, a, b);
    }
    return;
  }
  // Widened, then biased: two vectorised passes (libtorch 1.13 runs a mixed-dtype add element by element).
  o.copy_(product(out, a, b));
  if (bias.defined()) o.add_(bias);
}

}  // namespace mil
