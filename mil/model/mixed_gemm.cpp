#include "mil/model/mixed_gemm.hpp"

#include "mil/model/bf16_ops.hpp"
#include "mil/model/onednn_matmul.hpp"
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

// A CPU float32 matrix whose rows have unit stride: what bf16_ops::round reads.
bool float_rows(const torch::Tensor& t) {
  return t.device().is_cpu() && t.scalar_type() == torch::kFloat && t.dim() == 2 && t.stride(1) == 1;
}

torch::Tensor round_rows(torch::Tensor t, torch::Tensor& ws, bool relu) {
  torch::Tensor out = bf16_view(ws, t.sizes(), t.device());
  bf16_ops::round(t.data_ptr<float>(), t.size(0), t.size(1), t.stride(0),
                  reinterpret_cast<uint16_t*>(out.data_ptr<at::BFloat16>()), relu);
  return out;
}

// The multiply-adds from which a bag's float32 products go to oneDNN: below, its per-call cost (memory
// objects, argument map) outweighs its faster kernels. Measured with the fp32 step at D = 512 in one
// process, every library choice alternated (bench/README.md): all-OpenBLAS ahead up to N = 32 (2.1M), all-oneDNN
// ahead from N = 64 (4.2M).
constexpr int64_t kOnednnFloor = int64_t{1} << 22;

}  // namespace

torch::Tensor MixedGemm::to_bf16(const torch::Tensor& t, torch::Tensor& ws) {
  if (t.scalar_type() == torch::kBFloat16) return t;
  const auto rounded = [&ws](const torch::Tensor& s) {
    return float_rows(s) ? round_rows(s, ws, false) : bf16_view(ws, s.sizes(), s.device()).copy_(s);
  };
  if (t.dim() == 2 && !t.is_contiguous() && t.t().is_contiguous()) return rounded(t.t()).t();
  return rounded(t);
}

torch::Tensor MixedGemm::relu_to_bf16(torch::Tensor& t, torch::Tensor& ws) {
  MIL_CHECK(float_rows(t), "a CPU float32 matrix with unit column stride");
  return round_rows(t, ws, true);
}

void MixedGemm::round_into(const torch::Tensor& src, const torch::Tensor& dst) {
  MIL_CHECK(dst.scalar_type() == torch::kBFloat16 && dst.sizes() == src.sizes(), "a bfloat16 tensor of src's shape");
  if (float_rows(src) && dst.is_contiguous()) {
    bf16_ops::round(src.data_ptr<float>(), src.size(0), src.size(1), src.stride(0),
                    reinterpret_cast<uint16_t*>(dst.data_ptr<at::BFloat16>()), false);
    return;
  }
  torch::Tensor d = dst;  // a handle: copy_ is not const
  d.copy_(src);
}

MixedGemm::MixedGemm(Precision p) : precision_(p) {
  if (OnednnMatmul::available()) onednn_ = std::make_unique<OnednnMatmul>();
}

void MixedGemm::plan_bag(int64_t largest_product) {
  onednn_planned_ = onednn_ != nullptr && largest_product >= kOnednnFloor;
}

void MixedGemm::mm_fp32(const torch::Tensor& out, const torch::Tensor& a, const torch::Tensor& b,
                        const torch::Tensor& bias) {
  torch::Tensor o = out;  // a handle: the _out functions take a non-const reference
  if (onednn_planned_ && OnednnMatmul::accepts(o, a, b, bias)) {
    onednn_->run(o, a, b, bias);
    return;
  }  // small bags, a GPU, or the wheel's libtorch:
  if (bias.defined()) {
    at::addmm_out(o, bias, a, b);
  } else {
    at::mm_out(o, a, b);
  }
}

void MixedGemm::mm(const torch::Tensor& out, const torch::Tensor& a, const torch::Tensor& b,
                   const torch::Tensor& bias) {
  if (!bf16()) return mm_fp32(out, a, b, bias);
  torch::Tensor o = out;
  const torch::Tensor ab = to_bf16(a, a_ws_);
  const torch::Tensor bb = to_bf16(b, b_ws_);
  if (onednn_ && OnednnMatmul::accepts(o, ab, bb, bias)) {
    onednn_->run(o, ab, bb, bias);  // float32 result, bias added: no rounding of it, no second pass
    return;
  }
  MIL_CHECK(out.scalar_type() == torch::kFloat, "a float32 output");
  torch::Tensor r = bf16_view(out_ws_, out.sizes(), out.device());
  at::mm_out(r, ab, bb);
  if (float_rows(o) && (!bias.defined() || bias.is_contiguous())) {
    // Widened and biased in one pass.
    bf16_ops::widen({reinterpret_cast<const uint16_t*>(r.data_ptr<at::BFloat16>()), r.stride(0)}, r.size(0), r.size(1),
                    bias.defined() ? bias.data_ptr<float>() : nullptr, o.data_ptr<float>(), o.stride(0));
    return;
  }
  // Widened, then biased: two passes (libtorch 1.13 runs a mixed-dtype add element by element).
  o.copy_(r);
  if (bias.defined()) o.add_(bias);
}

}  // namespace mil
