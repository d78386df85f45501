// --precision bf16 in dsmil_train: a job trains with it (features kept as bfloat16 in the RAM cache), ends
// close to the fp32 job and not equal to it; a checkpoint of one precision does not resume the other.
#include <gtest/gtest.h>

#include <fstream>
#include <nlohmann/json.hpp>

#include "mil/data/synthetic.hpp"
#include "mil/dist/communicator.hpp"
#include "mil/io/files.hpp"
#include "mil/model/precision.hpp"
#include "mil/train/checkpoint_state.hpp"
#include "mil/train/train_step.hpp"
#include "mil/train/trainer.hpp"
#include "mil/util/error.hpp"
#include "tests/test_util.hpp"

namespace mil {
namespace {

using nlohmann::json;

std::string cpu_flags() {
  std::ifstream in("/proc/cpuinfo");
  for (std::string line; std::getline(in, line);) {
    if (line.rfind("flags", 0) == 0) return line;
  }
  return "";
}

// Validation scores a bf16 job's bags in float32 (TrainStep::forward): the module's eval-mode outputs to 1e-5,
// which the bf16 step's own forward (operands rounded to 8 bits) misses by orders of magnitude.
TEST(Bf16Training, ValidationForwardIsFloat32) {
  if (!bf16_cpu_problem(cpu_flags()).empty()) GTEST_SKIP() << "this CPU lacks bfloat16 multiplication";
  const ModelConfig mc{64, 2, true, true};
  DsmilNet ref(mc), trained(mc);
  ref->init_orthogonal(3);
  trained->init_orthogonal(3);
  ref->eval();
  TrainStep step(*trained, OptimizerConfig{}, Precision::kBFloat16);
  torch::manual_seed(4);
  for (const int64_t n : {9, 2000}) {
    SCOPED_TRACE("N = " + std::to_string(n));
    const torch::Tensor x = torch::randn({n, 64});
    torch::NoGradGuard no_grad;
    const DsmilOutput expected = ref->forward(x);
    const DsmilOutput out = step.forward(x);
    const double scale = expected.bag_logits.abs().max().item<double>();
    EXPECT_TRUE(test::all_close(out.bag_logits, expected.bag_logits, 1e-5, 1e-5 * scale));
    EXPECT_TRUE(test::all_close(out.instance_logits, expected.instance_logits, 1e-5, 1e-5));
  }
}

TEST(Bf16Training, TrainsCloseToFp32) {
  if (!bf16_cpu_problem(cpu_flags()).empty()) GTEST_SKIP() << "this CPU lacks bfloat16 multiplication";
  test::TempDir dir;
  SyntheticOptions o;
  o.num_bags = 40;
  o.feature_dim = 64;
  o.log_mean_instances = 4.0;
  write_synthetic_channel(dir.file("train"), o);
  const auto run = [&](const std::string& name, const std::string& precision) {
    TrainConfig cfg;
    cfg.train_dir = dir.file("train");
    cfg.labels = dir.file("train/labels.csv");
    cfg.model_dir = dir.file(name + "/model");
    cfg.output_dir = dir.file(name + "/output");
    cfg.checkpoint_dir = dir.file(name + "/checkpoints");
    cfg.epochs = 4;
    cfg.lr = 2e-3;
    cfg.cache = "ram";
    cfg.precision = precision;
    cfg.log_level = "warn";
    LocalCommunicator comm;
    run_training(cfg, comm);
    return json::parse(io::read_file(dir.file(name + "/output/metrics.json")));
  };
  const json fp32 = run("fp32", "fp32");
  const json bf16 = run("bf16", "bf16");
  EXPECT_NE(io::read_file(dir.file("fp32/model/model.pt")), io::read_file(dir.file("bf16/model/model.pt")));
  const json& e32 = fp32["epochs"].back();
  const json& e16 = bf16["epochs"].back();
  ASSERT_TRUE(e16.contains("train_loss")) << e16.dump();
  // Four epochs of bfloat16 rounding: the training loss within a few percent, the validation AUC close.
  EXPECT_NEAR(e16["train_loss"].get<double>(), e32["train_loss"].get<double>(), 0.05 * e32["train_loss"].get<double>());
  EXPECT_NEAR(e16["val_auc"][0].get<double>(), e32["val_auc"][0].get<double>(), 0.1);
}

TEST(Bf16Training, ACheckpointOfTheOtherPrecisionIsRefused) {
  TrainConfig cfg;
  const JobIdentity older{training_settings(cfg), "digest", 1};
  json without = older.settings;
  without.erase("precision");  // a checkpoint written before --precision existed trained in fp32
  const Checkpoint fp32_ckpt{1, "ckpt-1", encode_checkpoint(JobProgress{}, older)};
  const Checkpoint old_ckpt{1, "ckpt-1", encode_checkpoint(JobProgress{}, {without, "digest", 1})};
  EXPECT_NO_THROW(decode_checkpoint(fp32_ckpt, older));
  EXPECT_NO_THROW(decode_checkpoint(old_ckpt, older));
  cfg.precision = "bf16";
  const JobIdentity now{training_settings(cfg), "digest", 1};
  for (const Checkpoint* ckpt : {&fp32_ckpt, &old_ckpt}) {
    EXPECT_TRUE(test::throws_error_naming([&] { decode_checkpoint(*ckpt, now); },
                                          {"different training job", "precision", "bf16", "--no-resume"}));
  }
}

}  // namespace
}  // namespace mil
