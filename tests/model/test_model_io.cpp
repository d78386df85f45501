// Saving and loading models: our format carries its configuration; .pth exports keep the reference
// keys; broken state dicts are refused naming the key.
#include <gtest/gtest.h>

#include <algorithm>

#include "mil/model/state_dict.hpp"
#include "mil/util/error.hpp"
#include "tests/test_util.hpp"

namespace mil {
namespace {

ModelConfig small_config(bool nonlinear_q, bool passing_v, bool value_relu = true) {
  ModelConfig cfg;
  cfg.feature_dim = 24;
  cfg.num_classes = 3;
  cfg.nonlinear_q = nonlinear_q;
  cfg.passing_v = passing_v;
  cfg.value_relu = value_relu;
  return cfg;
}

void expect_identical_outputs(DsmilNetImpl& a, DsmilNetImpl& b) {
  torch::NoGradGuard no_grad;
  a.eval();
  b.eval();
  const torch::Tensor x = torch::randn({37, a.config().feature_dim});
  const DsmilOutput oa = a.forward(x);
  const DsmilOutput ob = b.forward(x);
  EXPECT_TRUE(torch::equal(oa.instance_logits, ob.instance_logits));
  EXPECT_TRUE(torch::equal(oa.bag_logits, ob.bag_logits));
  EXPECT_TRUE(torch::equal(oa.attention, ob.attention));
  EXPECT_TRUE(torch::equal(oa.bag_representation, ob.bag_representation));
}

class ModelIo : public ::testing::TestWithParam<std::pair<bool, bool>> {};

TEST_P(ModelIo, SavedThenLoadedModelGivesIdenticalOutputs) {
  const ModelConfig cfg = small_config(GetParam().first, GetParam().second);
  DsmilNet model(cfg);
  model->init_orthogonal(7);
  test::TempDir dir;
  const std::string path = dir.file("model.pt");
  save_model(path, *model, {{"thresholds", {0.25, 0.5, 0.75}}});

  nlohmann::json metadata;
  DsmilNet loaded = load_model(path, &metadata);
  EXPECT_EQ(loaded->config().describe(), cfg.describe());
  EXPECT_EQ(metadata["thresholds"][2].get<double>(), 0.75);
  expect_identical_outputs(*model, *loaded);
}

TEST_P(ModelIo, PthExportLoadsWithInferredArchitecture) {
  const ModelConfig cfg = small_config(GetParam().first, GetParam().second);
  DsmilNet model(cfg);
  model->init_orthogonal(11);
  test::TempDir dir;
  const std::string path = dir.file("export.pth");
  write_state_dict(path, state_dict_of(*model));
  DsmilNet loaded = load_model(path);  // no config in the file: inferred from keys
  EXPECT_EQ(loaded->config().describe(), cfg.describe());
  expect_identical_outputs(*model, *loaded);
}

INSTANTIATE_TEST_SUITE_P(Variants, ModelIo,
                         ::testing::Values(std::make_pair(true, false), std::make_pair(false, true),
                                           std::make_pair(true, true)));

TEST(ModelIo, KeysAreTheReferenceNames) {
  DsmilNet model(small_config(true, true));
  std::vector<std::string> keys;
  for (const auto& [key, t] : state_dict_of(*model)) keys.push_back(key);
  EXPECT_EQ(keys,
            (std::vector<std::string>{"i_classifier.fc.0.weight", "i_classifier.fc.0.bias", "b_classifier.q.0.weight",
                                      "b_classifier.q.0.bias", "b_classifier.q.2.weight", "b_classifier.q.2.bias",
                                      "b_classifier.v.1.weight", "b_classifier.v.1.bias", "b_classifier.fcc.weight",
                                      "b_classifier.fcc.bias"}));
}

TEST(ModelIo, MissingKeyIsRefusedNamingIt) {
  DsmilNet model(small_config(true, false));
  StateDict weights = state_dict_of(*model);
  weights.erase(weights.begin() + 7);  // b_classifier.fcc.bias
  test::TempDir dir;
  const std::string path = dir.file("missing.pth");
  write_state_dict(path, weights);
  try {
    load_model(path);
    FAIL() << "expected mil::Error";
  } catch (const Error& e) {
    EXPECT_EQ(e.file(), path);
    EXPECT_EQ(e.object(), "b_classifier.fcc.bias");
    EXPECT_NE(e.reason().find("missing"), std::string::npos) << e.what();
  }
}

TEST(ModelIo, MisshapedKeyIsRefusedNamingIt) {
  DsmilNet model(small_config(true, false));
  StateDict weights = state_dict_of(*model);
  for (auto& [key, t] : weights) {
    if (key == "b_classifier.q.2.weight") t = torch::zeros({128, 64});
  }
  test::TempDir dir;
  const std::string path = dir.file("misshaped.pth");
  write_state_dict(path, weights);
  try {
    load_model(path);
    FAIL() << "expected mil::Error";
  } catch (const Error& e) {
    EXPECT_EQ(e.object(), "b_classifier.q.2.weight");
    EXPECT_NE(e.reason().find("[128, 64]"), std::string::npos) << e.what();
    EXPECT_NE(e.reason().find("[128, 128]"), std::string::npos) << e.what();
  }
}

TEST(ModelIo, UnexpectedKeyIsRefusedNamingIt) {
  DsmilNet model(small_config(true, false));
  StateDict weights = state_dict_of(*model);
  weights.emplace_back("b_classifier.extra.weight", torch::zeros({3}));
  EXPECT_THROW(
      {
        try {
          load_state_dict(*model, weights, "in-memory");
        } catch (const Error& e) {
          EXPECT_EQ(e.object(), "b_classifier.extra.weight");
          throw;
        }
      },
      Error);
}

// The 2020 value network (no ReLU) has today's keys, so only our model file can tell the two apart.
TEST(ModelIo, ValueNetworkWithoutReluRoundTripsThroughOurFormat) {
  DsmilNet model(small_config(false, true, false));
  model->init_orthogonal(5);
  std::vector<std::string> keys;
  for (const auto& item : model->named_parameters()) keys.push_back(item.key());
  EXPECT_NE(std::find(keys.begin(), keys.end(), "b_classifier.v.1.weight"), keys.end());

  test::TempDir dir;
  save_model(dir.file("model.pt"), *model);
  DsmilNet loaded = load_model(dir.file("model.pt"));
  EXPECT_FALSE(loaded->config().value_relu);
  expect_identical_outputs(*model, *loaded);

  write_state_dict(dir.file("export.pth"), state_dict_of(*model));
  EXPECT_TRUE(load_model(dir.file("export.pth"))->config().value_relu);  // keys alone: today's variant
  DsmilNet told = load_model(dir.file("export.pth"), nullptr, false);    // dsmil_eval --value-relu false
  EXPECT_FALSE(told->config().value_relu);
  expect_identical_outputs(*model, *told);

  // Told for our own file, it must agree with what the file records; a .pth without v has nothing to tell.
  EXPECT_NO_THROW(load_model(dir.file("model.pt"), nullptr, false));
  EXPECT_THROW(
      {
        try {
          load_model(dir.file("model.pt"), nullptr, true);
        } catch (const Error& e) {
          EXPECT_NE(std::string(e.what()).find("records value_relu false"), std::string::npos) << e.what();
          throw;
        }
      },
      Error);
  DsmilNet no_v(small_config(true, false));
  write_state_dict(dir.file("no_v.pth"), state_dict_of(*no_v));
  EXPECT_THROW(load_model(dir.file("no_v.pth"), nullptr, false), Error);
}

// v = Linear without the ReLU: B = Aᵀ (X Wᵀ + b) keeps negative values; with the ReLU it cannot.
TEST(ModelIo, ValueReluDecidesWhetherTheBagRepresentationCanBeNegative) {
  torch::NoGradGuard no_grad;
  const torch::Tensor x = torch::randn({50, 24});
  for (bool relu : {true, false}) {
    DsmilNet model(small_config(false, true, relu));
    model->init_orthogonal(9);
    model->eval();
    const DsmilOutput out = model->forward(x);
    const auto lin = model->b_classifier->v->named_parameters();
    torch::Tensor values = torch::addmm(lin["1.bias"], x, lin["1.weight"].t());
    if (relu) values = torch::relu(values);
    const torch::Tensor expected = torch::mm(out.attention.t(), values).unsqueeze(0);
    EXPECT_TRUE(test::all_close(out.bag_representation, expected, 1e-5, 1e-5)) << relu;
    EXPECT_EQ(out.bag_representation.min().item<float>() < 0, !relu);
  }
}

TEST(ModelIo, OrthogonalInitIsSeededAndOrthogonal) {
  DsmilNet a(small_config(true, false));
  DsmilNet b(small_config(true, false));
  a->init_orthogonal(3);
  b->init_orthogonal(3);
  for (size_t i = 0; i < a->parameters().size(); ++i) EXPECT_TRUE(torch::equal(a->parameters()[i], b->parameters()[i]));
  const torch::Tensor w =
      a->b_classifier->q_nonlinear->named_parameters()["0.weight"];  // [128, 24]: orthonormal columns
  EXPECT_TRUE(test::all_close(torch::mm(w.t(), w), torch::eye(24), 0, 1e-5));
  EXPECT_EQ(a->i_classifier->fc->named_parameters()["0.bias"].abs().sum().item<float>(), 0.0f);
}

}  // namespace
}  // namespace mil
