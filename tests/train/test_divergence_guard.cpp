// The divergence guard: a non-finite loss, gradient or weight, or a loss past 1e12, stops training with an
// error naming the fold, epoch, step and slide, before a checkpoint or model with such weights is written; a
// restart resumes the last finite checkpoint and stops at the same place rather than training on NaN.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <limits>

#include "mil/data/synthetic.hpp"
#include "mil/dist/communicator.hpp"
#include "mil/train/checkpoint_store.hpp"
#include "mil/train/divergence_guard.hpp"
#include "mil/train/train_step.hpp"
#include "mil/train/trainer.hpp"
#include "mil/util/error.hpp"
#include "tests/test_util.hpp"

namespace mil {
namespace {

namespace fs = std::filesystem;

// What the trainer concludes from TrainStep::buffers_sum (read with the step's losses).
bool finite(TrainStep& step) {
  return std::isfinite(step.buffers_sum().item<double>());
}

torch::OrderedDict<std::string, torch::Tensor> two_params() {
  torch::OrderedDict<std::string, torch::Tensor> p;
  p.insert("a.weight", torch::ones({3, 2}).requires_grad_());
  p.insert("b.bias", torch::zeros({2}).requires_grad_());
  (p["a.weight"].sum() + p["b.bias"].sum()).backward();
  return p;
}

std::string message_of(const torch::OrderedDict<std::string, torch::Tensor>& p, const std::vector<StepBag>& bags) {
  return test::error_message([&] { check_step_finite(p, bags, {1, 3, 7, 20}); });
}

// The trainer's cheap pre-check: one sum per flat buffer. A NaN or Inf anywhere, weight or gradient, makes it
// false; finite values whose sum overflows make it false too, and the per-tensor check then clears them.
TEST(DivergenceGuard, FlatSumsFindEveryNonFiniteValue) {
  DsmilNet net(ModelConfig{16, 2, true, true});
  TrainStep step(*net, OptimizerConfig{});
  EXPECT_TRUE(finite(step));
  torch::NoGradGuard no_grad;
  for (const float bad : {std::nanf(""), std::numeric_limits<float>::infinity()}) {
    for (auto& p : net->parameters()) {
      const int64_t i = p.numel() - 1;
      const float kept = p.view({-1})[i].item<float>();
      p.view({-1})[i] = bad;
      EXPECT_FALSE(finite(step)) << bad;
      p.view({-1})[i] = kept;
    }
  }
  EXPECT_TRUE(finite(step));
  torch::Tensor x = torch::randn({5, 16});
  x[2][3] = std::nanf("");  // its gradients are NaN, the weights still finite
  step.zero_grad();
  step.accumulate(x, torch::zeros({2}));
  EXPECT_FALSE(finite(step));
  step.zero_grad();
  EXPECT_TRUE(finite(step));
  auto& w = net->named_parameters()["b_classifier.v.1.weight"];
  w.view({-1}).narrow(0, 0, 4).fill_(3e38f);  // finite, but their sum is not
  EXPECT_FALSE(finite(step));
  EXPECT_EQ(test::error_message([&] {
              check_step_finite(net->named_parameters(), {{"/d/s1.h5", 0.7}}, {1, 3, 7, 20});
            }),
            "");
}

TEST(DivergenceGuard, FiniteStepPasses) {
  EXPECT_EQ(message_of(two_params(), {{"/d/s1.h5", 0.7}}), "");
}

TEST(DivergenceGuard, NonFiniteLossNamesPlaceAndSlide) {
  const std::string msg = message_of(two_params(), {{"/d/s1.h5", 0.7}, {"/d/s2.h5", std::nan("")}});
  EXPECT_NE(msg.find("/d/s2.h5"), std::string::npos) << msg;
  EXPECT_NE(msg.find("fold 1 epoch 3 step 7/20"), std::string::npos) << msg;
  EXPECT_NE(msg.find("loss is nan"), std::string::npos) << msg;
}

// Finite weights can still make a dead network whose loss sits at ~1e30 (MKL's build at --lr 1e30): a loss
// past 1e12 stops the job too; a large loss a run can come back from does not.
TEST(DivergenceGuard, ALossPast1e12NamesPlaceAndSlide) {
  const std::string msg = message_of(two_params(), {{"/d/s1.h5", 0.7}, {"/d/s2.h5", 1.2e30}});
  EXPECT_NE(msg.find("/d/s2.h5"), std::string::npos) << msg;
  EXPECT_NE(msg.find("fold 1 epoch 3 step 7/20"), std::string::npos) << msg;
  EXPECT_NE(msg.find("loss is 1.2e+30 (above 1e+12)"), std::string::npos) << msg;
  EXPECT_NE(msg.find("the training diverged"), std::string::npos) << msg;
  EXPECT_EQ(message_of(two_params(), {{"/d/s1.h5", 5e4}}), "");
}

TEST(DivergenceGuard, NonFiniteGradientNamesTheParameter) {
  auto p = two_params();
  p["b.bias"].mutable_grad()[1] = std::numeric_limits<float>::infinity();
  const std::string msg = message_of(p, {{"/d/s1.h5", 0.7}});
  EXPECT_NE(msg.find("gradient of b.bias is not finite"), std::string::npos) << msg;
  EXPECT_NE(msg.find("/d/s1.h5"), std::string::npos) << msg;
}

TEST(DivergenceGuard, NonFiniteWeightNamesTheParameter) {
  auto p = two_params();
  torch::NoGradGuard no_grad;
  p["a.weight"][0][1] = std::nan("");
  const std::string msg = message_of(p, {{"/d/s1.h5", 0.7}});
  EXPECT_NE(msg.find("a.weight is not finite after the update"), std::string::npos) << msg;
}

// `--lr 1e30`, no validation set: the job used to exit 0 with a model of NaN weights, and checkpoints kept
// the NaNs so that every restart trained on them.
TEST(DivergenceGuard, ADivergingJobStopsWithoutWritingNonFiniteWeights) {
  test::TempDir dir;
  SyntheticOptions o;
  o.num_bags = 12;
  o.feature_dim = 8;
  o.log_mean_instances = 2.5;
  o.seed = 5;
  write_synthetic_channel(dir.file("train"), o);
  TrainConfig cfg;
  cfg.train_dir = dir.file("train");
  cfg.labels = dir.file("train/labels.csv");
  cfg.validation_dir = dir.file("train");  // every epoch "improves": the model would be the last weights
  cfg.validation_labels = cfg.labels;
  cfg.model_dir = dir.file("model");
  cfg.output_dir = dir.file("output");
  cfg.checkpoint_dir = dir.file("checkpoints");
  cfg.checkpoint_every_steps = 1;
  cfg.checkpoint_every_seconds = 0;
  cfg.keep_checkpoints = 1000;
  cfg.epochs = 3;
  cfg.lr = 1e30;
  cfg.log_level = "warn";
  for (int attempt = 0; attempt < 2; ++attempt) {  // the second resumes from the last checkpoint
    SCOPED_TRACE("attempt " + std::to_string(attempt));
    std::string msg;
    try {
      LocalCommunicator comm;
      run_training(cfg, comm);
    } catch (const Error& e) {
      msg = e.what();
    }
    EXPECT_NE(msg.find("the training diverged"), std::string::npos) << msg;
    EXPECT_NE(msg.find("fold 0 epoch "), std::string::npos) << msg;
    EXPECT_NE(msg.find(dir.file("train/slide_")), std::string::npos) << msg;
    EXPECT_FALSE(fs::exists(dir.file("model/model.pt")));
  }
  // Every checkpoint written holds finite tensors only (without the guard they held NaN weights).
  const std::vector<std::string> written = CheckpointStore(cfg.checkpoint_dir, 1000).list();
  for (const std::string& path : written) {
    std::vector<torch::Tensor> tensors;
    torch::load(tensors, path + "/tensors.pt");
    for (const torch::Tensor& t : tensors) {
      if (t.is_floating_point()) {
        EXPECT_TRUE(torch::isfinite(t).all().item<bool>()) << path;
      }
    }
  }
}

}  // namespace
}  // namespace mil
