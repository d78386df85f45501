// The packed step (--bags-per-step): one forward/backward over several bags concatenated, against the
// reference it must equal: the autograd model (DsmilNet + dsmil_loss) run on each bag alone, its gradients
// summed (what --accumulate sums), for every architecture tests/model/test_dsmil_step.cpp covers, on random
// packs of mixed sizes with bags of one instance; and on a bag whose padding, were it padded and masked only
// in the softmax as some MIL libraries do, would win the instance max-pool and become the critical instance.
// Each runs with the segment passes as CPU loops and as the libtorch ops a GPU runs.
#include <gtest/gtest.h>

#include <map>
#include <random>

#include "mil/model/loss.hpp"
#include "mil/model/packed_step.hpp"
#include "tests/model/architectures.hpp"
#include "tests/test_util.hpp"

namespace mil {
namespace {

// Within 1e-5 relative, or 1e-5 of the largest magnitude the quantity takes in the pack: a logit near zero is
// a sum of terms of that size, whose rounding depends on how the GEMM blocks a pack against one bag (a
// max logit of 9.4642e-4 against 9.4658e-4 with the CUDA wheel's libtorch).
::testing::AssertionResult close_1e5(const torch::Tensor& actual, const torch::Tensor& expected, double scale) {
  return test::all_close(actual, expected, 1e-5, 1e-5 * scale + 1e-9);
}

double largest(const std::vector<torch::Tensor>& tensors) {
  double m = 0;
  for (const torch::Tensor& t : tensors) m = std::max(m, t.abs().max().item<double>());
  return m;
}

struct Reference {
  std::vector<DsmilOutput> outputs;
  std::vector<double> losses;
  std::map<std::string, torch::Tensor> grads;  // summed over the bags
};

// The autograd model on each bag alone, node dropout seeded with seeds[b] before bag b (as the trainer does).
Reference per_bag_reference(DsmilNetImpl& net, const std::vector<torch::Tensor>& bags, const torch::Tensor& targets,
                            const std::vector<uint64_t>& seeds) {
  Reference r;
  for (auto& p : net.parameters()) p.mutable_grad() = torch::Tensor();
  for (size_t b = 0; b < bags.size(); ++b) {
    torch::manual_seed(seeds[b]);
    DsmilOutput out = net.forward(bags[b]);
    const torch::Tensor l = dsmil_loss(out, targets[static_cast<int64_t>(b)]);
    l.backward();
    r.losses.push_back(l.item<double>());
    r.outputs.push_back(out);
  }
  for (const auto& p : net.named_parameters()) r.grads[p.key()] = p.value().grad().clone();
  return r;
}

PackedBags make_pack(const std::vector<torch::Tensor>& bags, const torch::Tensor& targets,
                     const std::vector<uint64_t>& seeds) {
  PackedBags pack{torch::cat(bags, 0), {0}, targets, seeds};
  for (const torch::Tensor& x : bags) pack.offsets.push_back(pack.offsets.back() + x.size(0));
  return pack;
}

// Every forward output, each bag's loss and the summed gradients of the pack against the reference.
void expect_pack_matches(DsmilNetImpl& ref, DsmilNetImpl& fast, FlatParameters& flat, PackedStep& step,
                         const std::vector<torch::Tensor>& bags, const torch::Tensor& targets) {
  std::vector<uint64_t> seeds;
  for (size_t b = 0; b < bags.size(); ++b) seeds.push_back(1000 + 7 * b);
  const Reference expected = per_bag_reference(ref, bags, targets, seeds);
  const PackedBags pack = make_pack(bags, targets, seeds);
  flat.zero_grads();
  const torch::Tensor losses_tensor = step.accumulate(pack);
  ASSERT_EQ(losses_tensor.numel(), static_cast<int64_t>(bags.size()));
  const std::vector<double> losses(losses_tensor.data_ptr<double>(),
                                   losses_tensor.data_ptr<double>() + losses_tensor.numel());
  const PackedForward& out = step.last_forward();
  std::vector<torch::Tensor> logits, bag_logits, attention, reps;
  for (const DsmilOutput& e : expected.outputs) {
    logits.push_back(e.instance_logits);
    bag_logits.push_back(e.bag_logits);
    attention.push_back(e.attention);
    reps.push_back(e.bag_representation);
  }
  const double logit_scale = largest(logits), bag_scale = largest(bag_logits);
  const double attention_scale = largest(attention), rep_scale = largest(reps);
  for (size_t b = 0; b < bags.size(); ++b) {
    SCOPED_TRACE("bag " + std::to_string(b) + " of " + std::to_string(bags[b].size(0)) + " instances");
    const auto i = static_cast<int64_t>(b);
    const DsmilOutput& e = expected.outputs[b];
    const int64_t first = pack.offsets[b], n = bags[b].size(0);
    EXPECT_NEAR(losses[b], expected.losses[b], 1e-5 * std::abs(expected.losses[b]));
    EXPECT_TRUE(close_1e5(out.instance_logits.narrow(0, first, n), e.instance_logits, logit_scale));
    EXPECT_TRUE(close_1e5(out.max_logits[i], std::get<0>(e.instance_logits.max(0)), logit_scale));
    EXPECT_TRUE(torch::equal(out.critical[i] - first, std::get<1>(e.instance_logits.max(0))));
    EXPECT_TRUE(close_1e5(out.bag_logits[i], e.bag_logits[0], bag_scale));
    EXPECT_TRUE(close_1e5(step.attention(i), e.attention, attention_scale));
    EXPECT_TRUE(close_1e5(out.bag_rep[i], e.bag_representation[0], rep_scale));
  }
  for (const auto& p : fast.named_parameters()) {
    const int64_t offset = p.value().data_ptr<float>() - flat.values().data_ptr<float>();
    const torch::Tensor g = flat.grads().narrow(0, offset, p.value().numel()).view(p.value().sizes());
    const torch::Tensor& e = expected.grads.at(p.key());
    EXPECT_TRUE(close_1e5(g, e, e.abs().max().item<double>())) << p.key();
  }
}

using test::Architecture;
using test::config_of;

class PackMatchesPerBag : public ::testing::TestWithParam<std::tuple<Architecture, StepPasses>> {};

TEST_P(PackMatchesPerBag, RandomPacksOfMixedSizes) {
  const Architecture& k = std::get<0>(GetParam());
  const ModelConfig mc = config_of(k, 24);
  DsmilNet ref(mc), fast(mc);
  ref->init_orthogonal(5);
  fast->init_orthogonal(5);
  ref->train();
  fast->train();
  FlatParameters flat(*fast);
  PackedStep step(flat, std::get<1>(GetParam()));
  std::mt19937 rng(17);
  torch::manual_seed(11);
  // Packs of 1, 2, 5, 9 and 32 bags of 1-13 instances (every pack but the first has a one-instance bag),
  // then a pack with a bag of 300: the workspaces grow and shrink their views between packs.
  for (int bags_in_pack : {1, 2, 5, 9, 32, 3}) {
    SCOPED_TRACE("pack of " + std::to_string(bags_in_pack));
    std::vector<torch::Tensor> bags;
    for (int b = 0; b < bags_in_pack; ++b) {
      int64_t n = 1 + static_cast<int64_t>(rng() % 13);
      if (b == 1) n = 1;
      if (bags_in_pack == 3 && b == 2) n = 300;
      bags.push_back(torch::randn({n, 24}) * (b % 2 ? 3.0 : 1.0));
    }
    const torch::Tensor targets = torch::randint(0, 2, {bags_in_pack, k.classes}).to(torch::kFloat);
    expect_pack_matches(*ref, *fast, flat, step, bags, targets);
  }
}

INSTANTIATE_TEST_SUITE_P(Architectures, PackMatchesPerBag,
                         ::testing::Combine(::testing::ValuesIn(test::kStepArchitectures),
                                            ::testing::Values(StepPasses::kAuto, StepPasses::kTorchOps)));

TEST(PackedStep, PaddingCouldNotWinTheMaxPool) {
  for (const auto& [k, passes] : {std::pair{Architecture{1, true, false, true}, StepPasses::kAuto},
                                  std::pair{Architecture{2, true, true, true}, StepPasses::kAuto},
                                  std::pair{Architecture{1, true, false, true}, StepPasses::kTorchOps},
                                  std::pair{Architecture{2, true, true, true}, StepPasses::kTorchOps}}) {
    SCOPED_TRACE(describe(k) + (passes == StepPasses::kAuto ? ", CPU loops" : ", libtorch ops"));
    const ModelConfig mc = config_of(k, 16);
    DsmilNet ref(mc), fast(mc);
    for (DsmilNet* net : {&ref, &fast}) {
      (*net)->init_orthogonal(3);
      (*net)->train();
    }
    // A short bag whose instances all point against every class's instance weights: each instance logit is
    // below the classifier's bias, which is what a zero padding row scores.
    const torch::Tensor wi = ref->named_parameters()["i_classifier.fc.0.weight"].detach();
    const torch::Tensor short_bag = -2.0 * wi.sum(0).repeat({3, 1}) + 0.01 * torch::randn({3, 16});
    const std::vector<torch::Tensor> bags = {torch::randn({9, 16}), short_bag, torch::randn({1, 16}),
                                             torch::randn({12, 16})};
    const torch::Tensor targets = torch::ones({4, k.classes});
    const torch::Tensor bias = ref->named_parameters()["i_classifier.fc.0.bias"].detach();
    {
      torch::NoGradGuard no_grad;
      const DsmilOutput alone = ref->forward(short_bag);
      ASSERT_TRUE((alone.instance_logits < bias).all().item<bool>()) << "the test bag is not all below padding";
      // Padded to the pack's longest bag with zero rows, unmasked: a padding row wins the max-pool and becomes
      // the critical instance, and the loss and bag score change.
      const DsmilOutput padded = ref->forward(torch::cat({short_bag, torch::zeros({9, 16})}, 0));
      ASSERT_TRUE((std::get<1>(padded.instance_logits.max(0)) >= 3).all().item<bool>());
      ASSERT_GT((dsmil_loss(padded, targets[1]) - dsmil_loss(alone, targets[1])).abs().item<double>(), 1e-3);
    }
    FlatParameters flat(*fast);
    PackedStep step(flat, passes);
    expect_pack_matches(*ref, *fast, flat, step, bags, targets);
    // The short bag's critical instances are its own rows (pack rows 9..11).
    const torch::Tensor critical = step.last_forward().critical[1];
    EXPECT_TRUE(((critical >= 9) & (critical < 12)).all().item<bool>()) << critical;
  }
}

TEST(PackedStep, MalformedPacksAreRefused) {
  ModelConfig mc;
  mc.feature_dim = 8;
  DsmilNet net(mc);
  FlatParameters flat(*net);
  PackedStep step(flat);
  const torch::Tensor x = torch::randn({5, 8});
  const torch::Tensor t = torch::zeros({2, 1});
  EXPECT_THROW(step.accumulate({x, {0, 5}, t, {}}), Error);     // two targets, one bag
  EXPECT_THROW(step.accumulate({x, {0, 0, 5}, t, {}}), Error);  // an empty bag
  EXPECT_THROW(step.accumulate({x, {0, 2, 4}, t, {}}), Error);  // rows left over
  EXPECT_THROW(step.accumulate({torch::randn({5, 7}), {0, 2, 5}, t, {}}), Error);
  EXPECT_NO_THROW(step.accumulate({x, {0, 2, 5}, t, {}}));
}

}  // namespace
}  // namespace mil
