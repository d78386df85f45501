#include "mil/model/onednn_matmul.hpp"

#include "mil/util/check.hpp"

#if DSMIL_HAVE_ONEDNN
#include <array>
#include <oneapi/dnnl/dnnl.hpp>
#include <optional>
#include <unordered_map>
#endif

namespace mil {

bool OnednnMatmul::accepts(const torch::Tensor& out, const torch::Tensor& a, const torch::Tensor& b,
                           const torch::Tensor& bias) {
  const auto operand = [&a](const torch::Tensor& t) {
    return t.device().is_cpu() && t.scalar_type() == a.scalar_type() && t.dim() == 2 &&
           (t.stride(0) == 1 || t.stride(1) == 1);
  };
  const bool types = a.scalar_type() == torch::kBFloat16 || a.scalar_type() == torch::kFloat;
  return available() && types && operand(a) && operand(b) && out.device().is_cpu() &&
         out.scalar_type() == torch::kFloat && out.dim() == 2 && out.stride(1) == 1 &&
         (!bias.defined() || (bias.device().is_cpu() && bias.scalar_type() == torch::kFloat && bias.is_contiguous()));
}

#if DSMIL_HAVE_ONEDNN

namespace {

using dnnl::memory;
constexpr memory::dim kRuntime = DNNL_RUNTIME_DIM_VAL;

// A matrix whose rows (or, transposed, columns) are contiguous; every size and the other stride known only
// when the primitive runs.
memory::desc runtime_desc(memory::data_type type, bool transposed) {
  return memory::desc({kRuntime, kRuntime}, type, transposed ? memory::dims{1, kRuntime} : memory::dims{kRuntime, 1});
}

// A memory object over a 2-d tensor's data as it lies: its sizes, its strides.
memory matrix(const torch::Tensor& t, memory::data_type type, const dnnl::engine& engine) {
  return memory(memory::desc({t.size(0), t.size(1)}, type, {t.stride(0), t.stride(1)}), engine, t.data_ptr());
}

bool transposed(const torch::Tensor& t) {
  return t.stride(1) != 1;
}

memory::data_type operand_type(const torch::Tensor& t) {
  return t.scalar_type() == torch::kBFloat16 ? memory::data_type::bf16 : memory::data_type::f32;
}

}  // namespace

// One primitive per (operand type, a transposed, b transposed, bias), created on first use.
struct OnednnMatmul::Primitives {
  dnnl::engine engine{dnnl::engine::kind::cpu, 0};
  dnnl::stream stream{engine};
  std::array<std::optional<dnnl::matmul>, 16> made;

  dnnl::matmul& get(memory::data_type type, bool a_t, bool b_t, bool bias) {
    const bool bf16 = type == memory::data_type::bf16;
    std::optional<dnnl::matmul>& p = made[(bf16 ? 8 : 0) + (a_t ? 4 : 0) + (b_t ? 2 : 0) + (bias ? 1 : 0)];
    if (!p) {
      using dt = memory::data_type;
      const memory::desc a = runtime_desc(type, a_t);
      const memory::desc b = runtime_desc(type, b_t);
      const memory::desc out = runtime_desc(dt::f32, false);
      const memory::desc bias_md = bias ? memory::desc({1, kRuntime}, dt::f32, {kRuntime, 1}) : memory::desc();
#if DNNL_VERSION_MAJOR >= 3
      p.emplace(dnnl::matmul::primitive_desc(engine, a, b, bias_md, out));
#else
      p.emplace(dnnl::matmul::primitive_desc(dnnl::matmul::desc(a, b, bias_md, out), engine));
#endif
    }
    return *p;
  }
};

OnednnMatmul::OnednnMatmul() : primitives_(std::make_unique<Primitives>()) {}
OnednnMatmul::~OnednnMatmul() = default;
bool OnednnMatmul::available() {
  return true;
}

void OnednnMatmul::run(const torch::Tensor& out, const torch::Tensor& a, const torch::Tensor& b,
                       const torch::Tensor& bias) {
  MIL_CHECK(accepts(out, a, b, bias), "operands oneDNN's matmul takes as they lie");
  MIL_CHECK(a.size(1) == b.size(0) && out.size(0) == a.size(0) && out.size(1) == b.size(1) &&
                (!bias.defined() || bias.numel() == out.size(1)),
            "matching sizes");
  using dt = memory::data_type;
  const dnnl::engine& e = primitives_->engine;
  const dt type = operand_type(a);
  std::unordered_map<int, memory> args = {{DNNL_ARG_SRC, matrix(a, type, e)},
                                          {DNNL_ARG_WEIGHTS, matrix(b, type, e)},
                                          {DNNL_ARG_DST, matrix(out, dt::f32, e)}};
  if (bias.defined()) args.emplace(DNNL_ARG_BIAS, matrix(bias.view({1, bias.numel()}), dt::f32, e));
  primitives_->get(type, transposed(a), transposed(b), bias.defined()).execute(primitives_->stream, args);
}

#else  // a libtorch with its own oneDNN inside: MixedGemm keeps at::mm

struct OnednnMatmul::Primitives {};
OnednnMatmul::OnednnMatmul() = default;
OnednnMatmul::~OnednnMatmul() = default;
bool OnednnMatmul::available() {
  return false;
}
void OnednnMatmul::run(const torch::Tensor&, const torch::Tensor&, const torch::Tensor&, const torch::Tensor&) {
  MIL_CHECK(false, "a build with oneDNN (DSMIL_HAVE_ONEDNN)");
}

#endif

}  // namespace mil
