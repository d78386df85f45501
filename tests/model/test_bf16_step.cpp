// --precision bf16's step (DsmilStep with Precision::kBFloat16) against the fp32 step it approximates, on
// random bags of every architecture (with the CPU's loops and with the libtorch passes a GPU runs) and on the
// authors' training steps (golden/train_steps_tcga.h5).
//
// Tolerance, from bfloat16's 8 significant bits: rounding a value to bfloat16 changes it by at most
// u = 2^-8 relative. A product whose two operands are rounded and whose result is rounded once more is off
// by at most ~3u in norm, relative to its size (the sum itself accumulates in float32: negligible). The
// longest chain of such products in the step is four deep (x [Wi; W1]ᵀ, q's second layer, its backward into
// z1, then the [Wi; W1] gradient), so a gradient may be off by ~12u; we allow 16u = 2^-4 (norm-wise,
// per parameter tensor) and 4u for the loss (two products deep, then a sigmoid that does not amplify).
// A float32 step would be ~1e-7 off: each test also checks the bf16 path really rounded.
#include <gtest/gtest.h>

#include <fstream>
#include <map>

#include "mil/io/h5_reader.hpp"
#include "mil/model/dsmil_step.hpp"
#include "mil/model/state_dict.hpp"
#include "mil/train/fused_adam.hpp"
#include "tests/model/architectures.hpp"
#include "tests/test_util.hpp"

namespace mil {
namespace {

constexpr double kU = 1.0 / 256;  // bfloat16's unit roundoff, 2^-8

double relative_error(const torch::Tensor& actual, const torch::Tensor& expected) {
  const double scale = expected.norm().item<double>();
  return (actual - expected).norm().item<double>() / std::max(scale, 1e-30);
}

// One bag's loss and gradient (a copy of the flat buffer) through `step`.
std::pair<double, torch::Tensor> loss_and_gradient(FlatParameters& flat, DsmilStep& step, const torch::Tensor& x,
                                                   const torch::Tensor& y) {
  flat.zero_grads();
  const double loss = step.accumulate(x, y);
  return {loss, flat.grads().clone()};
}

// The gradient of each parameter tensor, by name, out of a flat gradient copy.
std::map<std::string, torch::Tensor> by_name(DsmilNetImpl& net, FlatParameters& flat, const torch::Tensor& grads) {
  std::map<std::string, torch::Tensor> out;
  for (const auto& p : net.named_parameters()) {
    const int64_t offset = p.value().data_ptr<float>() - flat.values().data_ptr<float>();
    out[p.key()] = grads.narrow(0, offset, p.value().numel()).view(p.value().sizes());
  }
  return out;
}

struct Bf16Case {
  test::Architecture arch;
  double bound;  // norm-wise, per parameter tensor
};

void PrintTo(const Bf16Case& k, std::ostream* os) {
  *os << describe(k.arch) << ", bound " << k.bound;
}

class Bf16StepMatchesFp32 : public ::testing::TestWithParam<Bf16Case> {};

TEST_P(Bf16StepMatchesFp32, WithinBf16Tolerance) {
  const Bf16Case& k = GetParam();
  const ModelConfig mc = test::config_of(k.arch, 96);
  DsmilNet net(mc);
  net->init_orthogonal(5);
  net->train();
  FlatParameters flat(*net);
  DsmilStep fp32(flat), bf16(flat, Precision::kBFloat16);
  DsmilStep bf16_gpu_way(flat, Precision::kBFloat16, StepPasses::kTorchOps);  // the GPU's passes, run here
  torch::manual_seed(11);
  const torch::Tensor y = torch::randint(0, 2, {k.arch.classes}).to(torch::kFloat);
  for (int64_t n : {1, 9, 400, 3000}) {
    SCOPED_TRACE("N = " + std::to_string(n));
    const torch::Tensor x = torch::randn({n, mc.feature_dim});
    const auto [ref_loss, ref_grads] = loss_and_gradient(flat, fp32, x, y);
    // The same bag given as float32 (rounded inside the step) and as bfloat16 (as the bf16 cache serves it).
    const auto [loss, grads] = loss_and_gradient(flat, bf16, x, y);
    const auto [loss_b, grads_b] = loss_and_gradient(flat, bf16, x.to(torch::kBFloat16), y);
    EXPECT_TRUE(torch::equal(grads, grads_b));
    EXPECT_EQ(loss, loss_b);
    EXPECT_NEAR(loss, ref_loss, 4 * kU * std::abs(ref_loss));
    const auto [loss_t, grads_t] = loss_and_gradient(flat, bf16_gpu_way, x.to(torch::kBFloat16), y);
    EXPECT_NEAR(loss_t, ref_loss, 4 * kU * std::abs(ref_loss));
    double worst = 0;
    const auto ref_named = by_name(*net, flat, ref_grads);
    const auto torch_named = by_name(*net, flat, grads_t);
    for (const auto& [key, g] : by_name(*net, flat, grads)) {
      const double e = relative_error(g, ref_named.at(key));
      EXPECT_LT(e, k.bound) << key;
      EXPECT_LT(relative_error(torch_named.at(key), ref_named.at(key)), k.bound) << key << " (libtorch passes)";
      worst = std::max(worst, e);
    }
    if (n > 1) {
      EXPECT_GT(worst, kU / 64) << "no parameter's gradient shows bfloat16 rounding";
    }
  }
}

// Without ReLUs only the arithmetic differs: 16u. With them, a pre-activation within bfloat16's error of zero
// (a fraction ~u of them) passes or stops its whole gradient row: allow 1/4 there.
INSTANTIATE_TEST_SUITE_P(
    Architectures, Bf16StepMatchesFp32,
    ::testing::Values(Bf16Case{{2, false, false, true}, 16 * kU}, Bf16Case{{1, false, true, false}, 16 * kU},
                      Bf16Case{{3, false, true, false}, 16 * kU}, Bf16Case{{1, true, false, true}, 0.25},
                      Bf16Case{{3, true, false, true}, 0.25}, Bf16Case{{2, true, true, true}, 0.25}));

TEST(Bf16Step, OnTheGpuWithinBf16Tolerance) {
  // The step a GPU runs with --precision bf16 (cuBLAS bfloat16 products, the passes as libtorch ops) against
  // the CPU's fp32 step from the same weights; bench/gpu_bench.sh runs it where a GPU is lent.
  if (!torch::cuda::is_available()) GTEST_SKIP() << "needs a GPU";
  const ModelConfig mc = test::config_of({2, true, false, true}, 96);
  DsmilNet cpu_net(mc);
  cpu_net->init_orthogonal(5);
  cpu_net->train();
  DsmilNet gpu_net(mc);
  gpu_net->init_orthogonal(5);
  gpu_net->train();
  gpu_net->to(torch::kCUDA);
  FlatParameters cpu_flat(*cpu_net), gpu_flat(*gpu_net);
  DsmilStep fp32(cpu_flat), bf16(gpu_flat, Precision::kBFloat16);
  torch::manual_seed(12);
  const torch::Tensor y = torch::tensor({1.0f, 0.0f});
  for (int64_t n : {1, 400, 3000}) {
    SCOPED_TRACE("N = " + std::to_string(n));
    const torch::Tensor x = torch::randn({n, mc.feature_dim});
    const auto [ref_loss, ref_grads] = loss_and_gradient(cpu_flat, fp32, x, y);
    const auto [loss, grads] = loss_and_gradient(gpu_flat, bf16, x.to(torch::kBFloat16).to(torch::kCUDA), y.cuda());
    EXPECT_NEAR(loss, ref_loss, 4 * kU * std::abs(ref_loss));
    const auto ref_named = by_name(*cpu_net, cpu_flat, ref_grads);
    for (const auto& [key, g] : by_name(*gpu_net, gpu_flat, grads)) {
      EXPECT_LT(relative_error(g.cpu(), ref_named.at(key)), 0.25) << key;  // ReLUs: the bound above
    }
  }
}

TEST(Bf16Step, TheAuthorsTrainingStepsWithinBf16Tolerance) {
  // The golden file's three steps (D = 512 TCGA features), bf16 against the authors' losses and against the
  // fp32 step's gradients at the same weights, then the weights after the three Adam steps.
  const std::string golden = test::data_path("reference/golden/train_steps_tcga.h5");
  DsmilNet model = load_model(test::data_path("reference/tcga_aggregator.pth"));
  model->train();
  FlatParameters flat(*model);
  DsmilStep fp32(flat), bf16(flat, Precision::kBFloat16);
  OptimizerConfig opt_cfg;
  opt_cfg.lr = 1e-4;
  opt_cfg.weight_decay = 1e-3;
  FusedAdam adam(flat.values(), flat.grads(), opt_cfg);
  for (int s = 0; s < 3; ++s) {
    SCOPED_TRACE("step " + std::to_string(s));
    const std::string group = "step_" + std::to_string(s);
    const torch::Tensor x = io::read_h5_float_tensor(golden, group + "/features");
    const torch::Tensor y = io::read_h5_float_tensor(golden, group + "/label");
    const auto [ref_loss, ref_grads] = loss_and_gradient(flat, fp32, x, y);
    const auto [loss, grads] = loss_and_gradient(flat, bf16, x, y);
    const double expected_loss = io::read_h5_number_attribute(golden, group, "loss");
    EXPECT_NEAR(loss, expected_loss, 4 * kU * std::abs(expected_loss));
    EXPECT_LT(relative_error(grads, ref_grads), 16 * kU);
    EXPECT_GT(relative_error(grads, ref_grads), kU / 64);
    adam.step();  // with the bf16 gradient, left in flat.grads()
    // Adam moves each weight by about lr per step, in the direction of its gradient's sign: a bf16 error can
    // only flip that for weights whose gradient is near zero, so almost every weight lands where the
    // authors' did (within 0.05 lr, as TrainParity holds fp32), and none further than 2 lr per step taken.
    int64_t off = 0;
    for (const auto& [key, value] : state_dict_of(*model)) {
      const torch::Tensor expected = io::read_h5_float_tensor(golden, group + "/state_dict_after/" + key);
      off += ((value - expected).abs() > 0.05 * opt_cfg.lr).sum().item<int64_t>();
      EXPECT_TRUE(test::all_close(value, expected, 0, 2 * opt_cfg.lr * (s + 1))) << key;
    }
    EXPECT_LE(off, 0.05 * flat.numel());
  }
}

TEST(Bf16Step, TheRefusalNamesTheOptionAndWhatTheCpuLacks) {
  EXPECT_EQ(bf16_cpu_problem("fpu sse2 avx512f avx512_bf16 avx512bw"), "");
  EXPECT_EQ(bf16_cpu_problem("fpu amx_tile amx_bf16 amx_int8"), "");
  const std::string lacks = bf16_cpu_problem("fpu sse2 avx2 avx512f avx512bw amx_tile");
  EXPECT_NE(lacks.find("neither avx512_bf16 nor amx_bf16"), std::string::npos) << lacks;

  test::TempDir dir;
  const std::string cpuinfo = dir.file("cpuinfo");
  const auto write = [](const std::string& path, const std::string& text) { std::ofstream(path) << text; };
  write(cpuinfo, "processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f\nbugs\t\t: avx512_bf16\n");
  EXPECT_TRUE(test::throws_error_naming([&] { require_precision_support(Precision::kBFloat16, torch::kCPU, cpuinfo); },
                                        {"--precision", "bf16", "neither avx512_bf16 nor amx_bf16", "--precision fp32"},
                                        "--precision"));
  EXPECT_NO_THROW(require_precision_support(Precision::kFloat32, torch::kCPU, cpuinfo));
  write(cpuinfo, "processor\t: 0\nflags\t\t: fpu avx512f avx512_bf16\n");
  EXPECT_NO_THROW(require_precision_support(Precision::kBFloat16, torch::kCPU, cpuinfo));
  // GPUs: by compute capability (Ampere's 8.0 and newer multiply bfloat16 natively); this machine's "GPU" has none.
  EXPECT_EQ(bf16_gpu_problem(8, 0), "");
  EXPECT_EQ(bf16_gpu_problem(8, 6), "");
  EXPECT_EQ(bf16_gpu_problem(9, 0), "");
  const std::string v100 = bf16_gpu_problem(7, 0);
  EXPECT_NE(v100.find("compute capability 7.0"), std::string::npos) << v100;
  EXPECT_NE(v100.find("--precision fp32"), std::string::npos) << v100;
  if (!torch::cuda::is_available()) {
    EXPECT_TRUE(test::throws_error_naming(
        [&] { require_precision_support(Precision::kBFloat16, torch::Device(torch::kCUDA, 0), cpuinfo); },
        {"--precision", "bf16 on cuda:0", "could not be read", "--precision fp32"}, "--precision"));
  }
  EXPECT_TRUE(
      test::throws_error_naming([] { parse_precision("fp16"); }, {"--precision", "fp16", "fp32, bf16"}, "--precision"));
}

}  // namespace
}  // namespace mil
