// Forward parity with the authors' dsmil.py: outputs of their code on their weights (golden/*.h5).
#include <gtest/gtest.h>

#include "mil/io/h5_reader.hpp"
#include "mil/model/state_dict.hpp"
#include "tests/test_util.hpp"

namespace mil {
namespace {

constexpr double kRtol = 1e-5;
constexpr double kAtol = 1e-6;

StateDict state_dict_group(const std::string& file, const StateDict& like) {
  StateDict out;
  for (const auto& [key, t] : like) out.emplace_back(key, io::read_h5_float_tensor(file, "state_dict/" + key));
  return out;
}

struct Case {
  const char* golden;
  const char* weights;  // .pth, or nullptr: the golden file's state_dict group
  ModelConfig expected;
};

// ctest lists the parameter's printed bytes otherwise: pointers, different on every run.
void PrintTo(const Case& c, std::ostream* os) {
  *os << c.golden << " (" << c.expected.describe() << ")";
}

class ForwardParity : public ::testing::TestWithParam<Case> {};

TEST_P(ForwardParity, AllOutputsMatchReference) {
  const Case& c = GetParam();
  const std::string golden = test::data_path(std::string("reference/golden/") + c.golden);

  DsmilNet model(nullptr);
  if (c.weights != nullptr) {
    const std::string pth = test::data_path(std::string("reference/") + c.weights);
    model = load_model(pth);
    // The .pth we read must be exactly what the reference ran with.
    for (const auto& [key, t] : state_dict_of(*model)) {
      EXPECT_TRUE(torch::equal(t, io::read_h5_float_tensor(golden, "state_dict/" + key))) << key;
    }
  } else {
    DsmilNet shape_only(c.expected);
    StateDict weights = state_dict_group(golden, state_dict_of(*shape_only));
    ModelConfig inferred = infer_config(weights, golden);
    EXPECT_EQ(inferred.describe(), c.expected.describe());
    model = DsmilNet(inferred);
    load_state_dict(*model, weights, golden);
    model->eval();
  }
  EXPECT_EQ(model->config().describe(), c.expected.describe());

  torch::NoGradGuard no_grad;
  const DsmilOutput out = model->forward(io::read_h5_float_tensor(golden, "features"));
  EXPECT_TRUE(test::all_close(out.instance_logits, io::read_h5_float_tensor(golden, "instance_logits"), kRtol, kAtol));
  EXPECT_TRUE(test::all_close(out.bag_logits, io::read_h5_float_tensor(golden, "bag_logits"), kRtol, kAtol));
  EXPECT_TRUE(test::all_close(out.attention, io::read_h5_float_tensor(golden, "attention"), kRtol, kAtol));
  EXPECT_TRUE(
      test::all_close(out.bag_representation, io::read_h5_float_tensor(golden, "bag_representation"), kRtol, kAtol));
}

ModelConfig config(int64_t classes, bool nonlinear_q, bool passing_v) {
  ModelConfig cfg;
  cfg.feature_dim = 512;
  cfg.num_classes = classes;
  cfg.nonlinear_q = nonlinear_q;
  cfg.passing_v = passing_v;
  return cfg;
}

INSTANTIATE_TEST_SUITE_P(
    Golden, ForwardParity,
    ::testing::Values(Case{"forward_c16_aggregator.h5", "c16_aggregator.pth", config(1, true, false)},
                      Case{"forward_tcga_aggregator.h5", "tcga_aggregator.pth", config(2, true, false)},
                      Case{"forward_linear_q_passing_v.h5", nullptr, config(2, false, true)}),
    [](const ::testing::TestParamInfo<Case>& param_info) {
      std::string name = param_info.param.golden;
      name = name.substr(8, name.size() - 8 - 3);  // strip "forward_" and ".h5"
      return name;
    });

}  // namespace
}  // namespace mil
