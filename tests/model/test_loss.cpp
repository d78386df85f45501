// The loss and scores in host form (validation's per-bag scoring on the CPU) against the tensor forms they
// replace there: dsmil_loss and TrainedModel::probability_tensor.
#include <gtest/gtest.h>

#include <cmath>

#include "mil/model/loss.hpp"
#include "mil/model/trained_model.hpp"

namespace mil {
namespace {

// Outputs of C classes over N instances, the logits spread over [-scale, scale]; instance logits a
// transposed (non-contiguous) view when `strided`, as the step's attention is.
DsmilOutput outputs(int64_t n, int64_t c, double scale, bool strided) {
  DsmilOutput out;
  out.instance_logits = strided ? (torch::rand({c, n}) * 2 - 1).mul(scale).t() : (torch::rand({n, c}) * 2 - 1) * scale;
  out.bag_logits = (torch::rand({1, c}) * 2 - 1) * scale;
  return out;
}

TEST(HostLoss, MatchesTheTensorLossAndScores) {
  torch::manual_seed(3);
  int cases = 0;
  for (int64_t c : {1, 2, 5}) {
    for (int64_t n : {1, 7, 300}) {
      for (double scale : {0.5, 8.0, 80.0}) {  // 80: exp(-x) overflows a naive form
        for (bool strided : {false, true}) {
          const DsmilOutput out = outputs(n, c, scale, strided);
          std::vector<float> target(static_cast<size_t>(c));
          for (int64_t k = 0; k < c; ++k) target[static_cast<size_t>(k)] = static_cast<float>((k + n) % 2);
          const double expected = dsmil_loss(out, torch::tensor(target)).item<double>();
          EXPECT_NEAR(dsmil_loss_on_host(out, target), expected, 1e-6 * std::max(1.0, std::fabs(expected)))
              << "C " << c << ", N " << n << ", scale " << scale;

          const std::vector<double> top = max_instance_logits(out);
          const torch::Tensor torch_top = std::get<0>(out.instance_logits.max(0));
          for (int64_t k = 0; k < c; ++k) EXPECT_EQ(top[static_cast<size_t>(k)], torch_top[k].item<float>());

          TrainedModel model;
          for (bool average : {false, true}) {
            model.average = average;
            const std::vector<double> p = model.probabilities(out);
            const torch::Tensor q = model.probability_tensor(out);
            ASSERT_EQ(static_cast<int64_t>(p.size()), c);
            for (int64_t k = 0; k < c; ++k) EXPECT_NEAR(p[static_cast<size_t>(k)], q[k].item<double>(), 1e-7);
          }
          ++cases;
        }
      }
    }
  }
  EXPECT_EQ(cases, 54);
}

TEST(HostLoss, ANanInstanceLogitWinsTheMaxAsTorchsDoes) {
  DsmilOutput out = outputs(5, 2, 1.0, false);
  out.instance_logits[3][1] = NAN;
  const std::vector<double> top = max_instance_logits(out);
  EXPECT_FALSE(std::isnan(top[0]));
  EXPECT_TRUE(std::isnan(top[1]));
  EXPECT_TRUE(std::isnan(std::get<0>(out.instance_logits.max(0))[1].item<float>()));  // torch agrees
  EXPECT_TRUE(std::isnan(dsmil_loss_on_host(out, {1.0f, 0.0f})));
}

}  // namespace
}  // namespace mil
