// FusedAdam (one pass over the flat buffers) against torch::optim::Adam, and its state: saved and restored
// bit for bit, and restored from a torch::optim::Adam state as checkpoints of format 1 hold it.
#include <gtest/gtest.h>

#include "mil/model/flat_params.hpp"
#include "mil/model/state_dict.hpp"
#include "mil/train/fused_adam.hpp"
#include "mil/util/error.hpp"
#include "tests/test_util.hpp"

namespace mil {
namespace {

ModelConfig small_model() {
  ModelConfig mc;
  mc.feature_dim = 20;
  mc.num_classes = 2;
  return mc;
}

// Random per-step gradients for every parameter, the same for both optimisers.
std::vector<torch::Tensor> random_grads(const std::vector<torch::Tensor>& params, int step) {
  torch::manual_seed(1000 + step);
  std::vector<torch::Tensor> g;
  for (const auto& p : params) g.push_back(torch::randn(p.sizes()) * (step + 1) * 1e-2);
  return g;
}

void set_flat_grads(FlatParameters& flat, DsmilNetImpl& net, const std::vector<torch::Tensor>& grads) {
  const std::vector<torch::Tensor> params = net.parameters();
  for (size_t i = 0; i < params.size(); ++i) {
    const int64_t offset = params[i].data_ptr<float>() - flat.values().data_ptr<float>();
    flat.grads().narrow(0, offset, params[i].numel()).copy_(grads[i].reshape({-1}));
  }
}

OptimizerConfig config() {
  OptimizerConfig cfg;
  cfg.lr = 1e-3;
  cfg.weight_decay = 1e-2;
  return cfg;
}

TEST(FusedAdam, StepsAsTorchAdamWithTheGradientMeanFoldedIn) {
  DsmilNet ref(small_model()), fast(small_model());
  ref->init_orthogonal(3);
  fast->init_orthogonal(3);
  const StateDict initial = state_dict_of(*ref);
  auto adam = make_adam(ref->parameters(), config());
  FlatParameters flat(*fast);
  FusedAdam fused(flat.values(), flat.grads(), config());
  for (int step = 0; step < 6; ++step) {
    const int64_t bags = step % 2 == 0 ? 1 : 3;  // torch's Adam gets the mean, fused the sum and the count
    const std::vector<torch::Tensor> g = random_grads(ref->parameters(), step);
    adam->zero_grad();
    for (size_t i = 0; i < g.size(); ++i) ref->parameters()[i].mutable_grad() = g[i].clone();
    adam->step();
    std::vector<torch::Tensor> summed;
    for (const auto& t : g) summed.push_back(t * static_cast<double>(bags));
    set_flat_grads(flat, *fast, summed);
    fused.step(bags);
    if (step == 0) fused.set_lr(config().lr);  // set_lr is the schedule's hook: same value, same result
  }
  EXPECT_EQ(fused.steps_taken(), 6);
  const StateDict trained = state_dict_of(*fast);
  for (size_t i = 0; i < trained.size(); ++i) {
    const auto& [key, value] = trained[i];
    EXPECT_TRUE(test::all_close(value, ref->named_parameters()[key].detach(), 1e-6, 1e-8)) << key;
    EXPECT_FALSE(torch::equal(value, initial[i].second)) << key << ": the test trained nothing";
  }
}

TEST(FusedAdam, SavedStateResumesBitForBit) {
  DsmilNet a(small_model()), b(small_model());
  a->init_orthogonal(3);
  FlatParameters flat_a(*a);
  FusedAdam adam_a(flat_a.values(), flat_a.grads(), config());
  for (int step = 0; step < 3; ++step) {
    set_flat_grads(flat_a, *a, random_grads(a->parameters(), step));
    adam_a.step(2);
  }
  FlatParameters flat_b(*b);
  flat_b.values().copy_(flat_a.values());
  FusedAdam adam_b(flat_b.values(), flat_b.grads(), config());
  adam_b.load_state(adam_a.save_state(), "ckpt", b->parameters());
  EXPECT_EQ(adam_b.steps_taken(), 3);
  for (int step = 3; step < 5; ++step) {
    set_flat_grads(flat_a, *a, random_grads(a->parameters(), step));
    set_flat_grads(flat_b, *b, random_grads(b->parameters(), step));
    adam_a.step(2);
    adam_b.step(2);
  }
  EXPECT_TRUE(torch::equal(flat_a.values(), flat_b.values()));
}

TEST(FusedAdam, RestoresATorchAdamStateOfCheckpointFormat1) {
  DsmilNet ref(small_model()), fast(small_model());
  ref->init_orthogonal(4);
  auto adam = make_adam(ref->parameters(), config());
  for (int step = 0; step < 3; ++step) {
    const std::vector<torch::Tensor> g = random_grads(ref->parameters(), step);
    for (size_t i = 0; i < g.size(); ++i) ref->parameters()[i].mutable_grad() = g[i].clone();
    adam->step();
  }
  const std::string old_state = save_optimizer_state(*adam);
  FlatParameters flat(*fast);
  load_state_dict(*fast, state_dict_of(*ref), "ref");
  FusedAdam fused(flat.values(), flat.grads(), config());
  fused.load_state(old_state, "ckpt", fast->parameters());
  EXPECT_EQ(fused.steps_taken(), 3);
  // Each parameter's moments land, bit for bit, at the parameter's place in the flat buffer.
  const std::vector<torch::Tensor> ref_params = ref->parameters();
  const std::vector<torch::Tensor> fast_params = fast->parameters();
  for (size_t i = 0; i < ref_params.size(); ++i) {
    const auto& st = static_cast<torch::optim::AdamParamState&>(*adam->state().at(optimizer_state_key(ref_params[i])));
    const int64_t offset = fast_params[i].data_ptr<float>() - flat.values().data_ptr<float>();
    EXPECT_TRUE(torch::equal(fused.exp_avg().narrow(0, offset, st.exp_avg().numel()), st.exp_avg().reshape({-1})));
    EXPECT_TRUE(
        torch::equal(fused.exp_avg_sq().narrow(0, offset, st.exp_avg().numel()), st.exp_avg_sq().reshape({-1})));
  }
  // And the next step continues the same run.
  const std::vector<torch::Tensor> g = random_grads(ref_params, 3);
  for (size_t i = 0; i < g.size(); ++i) ref_params[i].mutable_grad() = g[i].clone();
  adam->step();
  set_flat_grads(flat, *fast, g);
  fused.step();
  for (const auto& [key, value] : state_dict_of(*fast)) {
    EXPECT_TRUE(test::all_close(value, ref->named_parameters()[key].detach(), 1e-6, 1e-8)) << key;
  }
}

TEST(FusedAdam, RefusesStateItCannotUseNamingTheSource) {
  DsmilNet net(small_model()), other(ModelConfig{});
  FlatParameters flat(*net), flat_other(*other);
  FusedAdam adam(flat.values(), flat.grads(), config());
  FusedAdam adam_other(flat_other.values(), flat_other.grads(), config());
  try {
    adam.load_state("not an archive", "/ckpt/000007", net->parameters());
    FAIL() << "garbage was accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("/ckpt/000007"), std::string::npos) << e.what();
  }
  try {
    adam.load_state(adam_other.save_state(), "/ckpt/000008", net->parameters());
    FAIL() << "another model's state was accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("parameters"), std::string::npos) << e.what();
  }
  EXPECT_THROW(adam.step(0), Error);
}

}  // namespace
}  // namespace mil
