// The hand-written training step (DsmilStep over FlatParameters) and FusedAdam against the reference they
// replace: DsmilNet + dsmil_loss + autograd and torch::optim::Adam, on random bags of every architecture
// and on the authors' three training steps (golden/train_steps_tcga.h5).
#include <gtest/gtest.h>

#include <map>
#include <ostream>
#include <tuple>

#include "mil/io/h5_reader.hpp"
#include "mil/model/dsmil_step.hpp"
#include "mil/model/loss.hpp"
#include "mil/model/state_dict.hpp"
#include "mil/train/fused_adam.hpp"
#include "mil/util/error.hpp"
#include "tests/model/architectures.hpp"
#include "tests/test_util.hpp"

namespace mil {
namespace {

// Within 1e-5 of the reference, relative to each element and to the tensor's scale (a GEMM summing in
// another order leaves ~1e-7 of the largest term on elements that cancel to near zero).
::testing::AssertionResult close_1e5(const torch::Tensor& actual, const torch::Tensor& expected) {
  const double scale = expected.abs().max().item<double>();
  return test::all_close(actual, expected, 1e-5, 1e-5 * scale + 1e-9);
}

// The autograd reference's gradients, by parameter name, for a sum over `bags`.
std::map<std::string, torch::Tensor> autograd_gradients(DsmilNetImpl& net, const std::vector<torch::Tensor>& bags,
                                                        const torch::Tensor& y, uint64_t seed, double* loss) {
  for (auto& p : net.parameters()) p.mutable_grad() = torch::Tensor();
  *loss = 0;
  for (const torch::Tensor& x : bags) {
    torch::manual_seed(seed);
    const torch::Tensor l = dsmil_loss(net.forward(x), y);
    l.backward();
    *loss += l.item<double>();
  }
  std::map<std::string, torch::Tensor> out;
  for (const auto& p : net.named_parameters()) out[p.key()] = p.value().grad().clone();
  return out;
}

// The step's forward (validation's) against the module's, which the caller has put in eval mode, on one bag.
void expect_forward_matches(DsmilNetImpl& ref, DsmilStep& step, const torch::Tensor& x) {
  torch::NoGradGuard no_grad;
  const DsmilOutput expected = ref.forward(x);
  const DsmilOutput out = step.forward(x);
  EXPECT_TRUE(close_1e5(out.instance_logits, expected.instance_logits));
  EXPECT_TRUE(close_1e5(out.bag_logits, expected.bag_logits));
  EXPECT_TRUE(close_1e5(out.attention, expected.attention));
  EXPECT_TRUE(close_1e5(out.bag_representation, expected.bag_representation));
}

using test::Architecture;

// Both ways of running the passes: the CPU loops, and the libtorch ops the GPU runs.
class StepMatchesAutograd : public ::testing::TestWithParam<std::tuple<Architecture, StepPasses>> {};

TEST_P(StepMatchesAutograd, LossAndEveryGradient) {
  const Architecture& k = std::get<0>(GetParam());
  const ModelConfig mc = test::config_of(k, 24);
  DsmilNet ref(mc), fast(mc);
  ref->init_orthogonal(5);
  fast->init_orthogonal(5);
  ref->train();
  fast->train();
  FlatParameters flat(*fast);
  EXPECT_EQ(flat.numel(), [&] {
    int64_t n = 0;
    for (const auto& p : ref->parameters()) n += p.numel();
    return n;
  }());
  for (const auto& [key, t] : state_dict_of(*fast)) {  // binding moved the weights, it did not change them
    EXPECT_TRUE(torch::equal(t, ref->named_parameters()[key].detach())) << key;
  }
  DsmilStep step(flat, Precision::kFloat32, std::get<1>(GetParam()));
  torch::manual_seed(11);
  const torch::Tensor y = torch::randint(0, 2, {k.classes}).to(torch::kFloat);
  // One instance, a few, many, enough for oneDNN's products where the build multiplies with it (MixedGemm's
  // floor: 2^22 multiply-adds); then two bags accumulated into one gradient.
  const std::vector<std::vector<torch::Tensor>> cases = {{torch::randn({1, 24})},
                                                         {torch::randn({7, 24}) * 3},
                                                         {torch::randn({300, 24})},
                                                         {torch::randn({1500, 24})},
                                                         {torch::randn({5, 24}), torch::randn({40, 24})}};
  for (size_t i = 0; i < cases.size(); ++i) {
    SCOPED_TRACE("case " + std::to_string(i));
    double ref_loss = 0;
    const auto expected = autograd_gradients(*ref, cases[i], y, 99, &ref_loss);
    flat.zero_grads();
    double loss = 0;
    for (const torch::Tensor& x : cases[i]) {
      torch::manual_seed(99);  // node dropout: the same draws as the module's
      loss += step.accumulate(x, y);
    }
    EXPECT_NEAR(loss, ref_loss, 1e-5 * std::abs(ref_loss));
    // The gradient buffer, read back through the parameters' own offsets in the value buffer.
    for (const auto& p : fast->named_parameters()) {
      const int64_t offset = p.value().data_ptr<float>() - flat.values().data_ptr<float>();
      const torch::Tensor g = flat.grads().narrow(0, offset, p.value().numel()).view(p.value().sizes());
      EXPECT_TRUE(close_1e5(g, expected.at(p.key()))) << p.key();
    }
  }
}

// Bags accumulated into one step's gradient add up exactly as the same bags' gradients computed alone (the sum
// an all-reduce of per-rank gradients forms): what makes 2 ranks train the model of --accumulate 2 to the bit.
TEST_P(StepMatchesAutograd, AccumulatedBagsAddAsTheirGradientsAlone) {
  const Architecture& k = std::get<0>(GetParam());
  const ModelConfig mc = test::config_of(k, 24);
  DsmilNet net(mc);
  net->init_orthogonal(5);
  net->train();
  FlatParameters flat(*net);
  DsmilStep step(flat, Precision::kFloat32, std::get<1>(GetParam()));
  torch::manual_seed(12);
  const torch::Tensor y = torch::randint(0, 2, {k.classes}).to(torch::kFloat);
  // Bags of thousands of instances, so that the GEMMs block the bag dimension.
  const std::vector<torch::Tensor> bags = {torch::randn({3000, 24}), torch::randn({1700, 24}), torch::randn({9, 24})};
  const auto run = [&](const std::vector<size_t>& which) {
    flat.zero_grads();
    for (size_t i : which) {
      torch::manual_seed(static_cast<uint64_t>(100 + i));  // each bag its own node dropout draws
      step.accumulate(bags[i], y);
    }
    return flat.grads().clone();
  };
  const torch::Tensor sum = run({0}) + run({1}) + run({2});
  const torch::Tensor accumulated = run({0, 1, 2});
  EXPECT_EQ((accumulated - sum).abs().max().item<float>(), 0.0f);
}

// The forward alone (validation's) gives what the module gives in eval mode, node dropout off, in small bags
// and in one large enough for oneDNN's products; it leaves the gradient buffer as it was.
TEST_P(StepMatchesAutograd, ForwardMatchesTheModuleInEvalMode) {
  const Architecture& k = std::get<0>(GetParam());
  const ModelConfig mc = test::config_of(k, 24);
  DsmilNet ref(mc), fast(mc);
  ref->init_orthogonal(6);
  fast->init_orthogonal(6);
  ref->eval();
  FlatParameters flat(*fast);
  DsmilStep step(flat, Precision::kFloat32, std::get<1>(GetParam()));
  torch::manual_seed(13);
  flat.grads().normal_();
  const torch::Tensor grads_before = flat.grads().clone();
  for (const int64_t n : {1, 7, 300, 1500}) {
    SCOPED_TRACE("N = " + std::to_string(n));
    expect_forward_matches(*ref, step, torch::randn({n, 24}) * 2);
  }
  EXPECT_TRUE(torch::equal(flat.grads(), grads_before));
}

// Validation's forward where a GPU trains: the step's (libtorch ops, cuBLAS) against the module's, both on
// the GPU. bench/gpu_bench.sh runs it where a GPU is lent.
TEST(StepForward, OnTheGpuMatchesTheModule) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "needs a GPU";
  const ModelConfig mc = test::config_of({2, true, true, true, 0.3}, 96);
  DsmilNet ref(mc), fast(mc);
  ref->init_orthogonal(7);
  fast->init_orthogonal(7);
  ref->to(torch::kCUDA);
  fast->to(torch::kCUDA);
  ref->eval();
  FlatParameters flat(*fast);
  DsmilStep step(flat);
  torch::manual_seed(14);
  for (const int64_t n : {1, 400, 3000}) {
    SCOPED_TRACE("N = " + std::to_string(n));
    expect_forward_matches(*ref, step, torch::randn({n, mc.feature_dim}).cuda());
  }
}

INSTANTIATE_TEST_SUITE_P(Architectures, StepMatchesAutograd,
                         ::testing::Combine(::testing::ValuesIn(test::kStepArchitectures),
                                            ::testing::Values(StepPasses::kAuto, StepPasses::kTorchOps)));

TEST(DsmilStep, ThreeAdamStepsMatchTheAuthorsCode) {
  // As TrainParity.ThreeAdamStepsMatchReference, with the hand-written step and the fused Adam.
  const std::string golden = test::data_path("reference/golden/train_steps_tcga.h5");
  DsmilNet model = load_model(test::data_path("reference/tcga_aggregator.pth"));
  model->train();
  FlatParameters flat(*model);
  DsmilStep step(flat);
  OptimizerConfig opt_cfg;
  opt_cfg.lr = 1e-4;
  opt_cfg.weight_decay = 1e-3;
  FusedAdam adam(flat.values(), flat.grads(), opt_cfg);
  for (int s = 0; s < 3; ++s) {
    SCOPED_TRACE("step " + std::to_string(s));
    const std::string group = "step_" + std::to_string(s);
    flat.zero_grads();
    const double loss = step.accumulate(io::read_h5_float_tensor(golden, group + "/features"),
                                        io::read_h5_float_tensor(golden, group + "/label"));
    const double expected_loss = io::read_h5_number_attribute(golden, group, "loss");
    EXPECT_NEAR(loss, expected_loss, 1e-5 * std::abs(expected_loss));
    adam.step();
    int64_t outside_1e5 = 0;
    for (const auto& [key, value] : state_dict_of(*model)) {
      const torch::Tensor expected = io::read_h5_float_tensor(golden, group + "/state_dict_after/" + key);
      outside_1e5 += ((value - expected).abs() > 1e-5 * expected.abs() + 1e-7).sum().item<int64_t>();
      EXPECT_TRUE(test::all_close(value, expected, 0, 0.05 * opt_cfg.lr)) << key;
    }
    // The reference test's bound on elements whose near-zero gradient makes Adam's step rounding noise.
    EXPECT_LE(outside_1e5, 5e-4 * flat.numel());
  }
}

// The CPU step reads the trainer's float32 targets as they lie and converts any other: the same loss and the
// same gradient bits for a target of another type, shape or layout; a wrong count is refused.
TEST(DsmilStep, ATargetOfAnyTypeOrLayoutTrainsTheSameStep) {
  torch::manual_seed(4);
  ModelConfig mc;
  mc.feature_dim = 24;
  mc.num_classes = 3;
  DsmilNet net(mc);
  FlatParameters flat(*net);
  DsmilStep step(flat);
  const torch::Tensor x = torch::randn({9, 24});
  const torch::Tensor y = torch::tensor({1.0f, 0.0f, 1.0f});
  const auto run = [&](const torch::Tensor& target) {
    flat.zero_grads();
    const double loss = step.accumulate(x, target);
    return std::make_pair(loss, flat.grads().clone());
  };
  const auto [loss, grads] = run(y);
  const torch::Tensor strided = torch::stack({y, y}, 1).select(1, 0);  // stride 2: not contiguous
  ASSERT_FALSE(strided.is_contiguous());
  for (const torch::Tensor& other : {y.to(torch::kDouble), y.view({1, 3}), strided}) {
    const auto [l, g] = run(other);
    EXPECT_EQ(l, loss);
    EXPECT_TRUE(torch::equal(g, grads));
  }
  try {
    run(torch::ones({2}));
    FAIL() << "expected mil::Error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("target has 2 values, the model 3"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace mil
