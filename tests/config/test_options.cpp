// The option table both binaries share: dsmil_eval's command line, the keys SageMaker reserves, and which
// settings count as "what is trained" for a resumed job.
#include <gtest/gtest.h>

#include <set>
#include <string>
#include <vector>

#include "mil/config/eval_config.hpp"
#include "mil/config/options.hpp"
#include "mil/config/train_config.hpp"
#include "tests/test_util.hpp"

namespace mil {
namespace {

TEST(EvalOptions, RepeatedModelsVoteAndValuesAreTyped) {
  const ParsedEvalConfig p = parse_eval_config({"--model", "a", "--model=b", "--test", "t", "--value-relu", "false",
                                                "--attention", "--prefetch", "2", "--on_bad_slide", "skip"});
  EXPECT_EQ(p.config.models, (std::vector<std::string>{"a", "b"}));
  EXPECT_EQ(p.config.test_dir, "t");
  ASSERT_TRUE(p.config.pth_value_relu.has_value());
  EXPECT_FALSE(*p.config.pth_value_relu);
  EXPECT_TRUE(p.config.attention);
  EXPECT_EQ(p.config.prefetch, 2);
  EXPECT_EQ(p.config.on_bad_slide, "skip");
  EXPECT_NO_THROW(validate(p.config));
}

TEST(EvalOptions, DefaultsLeaveTheValueNetworkToTheFile) {
  const ParsedEvalConfig p = parse_eval_config({"--model", "m", "--test", "t"});
  EXPECT_FALSE(p.config.pth_value_relu.has_value());
  EXPECT_EQ(p.config.out_dir, "eval");
  EXPECT_EQ(p.config.device, "auto");
}

TEST(EvalOptions, MistakesNameTheOption) {
  EXPECT_TRUE(test::throws_error_naming(
      [] {
        parse_eval_config({"--value-relu", "maybe"});
      },
      {"--value-relu", "maybe"}));
  // A training option is not one of dsmil_eval's, and the message lists dsmil_eval's own.
  EXPECT_TRUE(test::throws_error_naming(
      [] {
        parse_eval_config({"--epochs", "3"});
      },
      {"unknown option --epochs", "known: model, test"}));
  EXPECT_TRUE(test::throws_error_naming(
      [] {
        parse_eval_config({"--model", "m", "stray"});
      },
      {"unexpected argument 'stray'"}));
  EXPECT_TRUE(test::throws_error_naming([] { validate(parse_eval_config({"--test", "t"}).config); }, {"--model"}));
  EXPECT_TRUE(test::throws_error_naming(
      [] {
        validate(parse_eval_config({"--model", "m", "--test", "t", "--on-bad-slide", "x"}).config);
      },
      {"--on-bad-slide must be fail or skip (got 'x')"}));
  EXPECT_TRUE(test::throws_error_naming(
      [] {
        validate(parse_eval_config({"--model", "m", "--test", "t", "--slide-dir", "s"}).config);
      },
      {"--slide-dir", "needs --plots"}));
}

TEST(EvalOptions, HelpListsOnlyEvalOptions) {
  const std::string help = parse_eval_config({"--help"}).help_text;
  EXPECT_NE(help.find("--model"), std::string::npos);
  EXPECT_NE(help.find("--features-key"), std::string::npos);
  EXPECT_EQ(help.find("--epochs"), std::string::npos);
  EXPECT_EQ(help.find("--dump-config"), std::string::npos);
}

TEST(TrainingSettings, LeaveOutWhereAndHowFastButKeepWhatIsTrained) {
  const nlohmann::json all = options_to_json(TrainConfig{});
  const nlohmann::json trains = training_options_to_json(TrainConfig{});
  std::set<std::string> left_out;
  for (const auto& [key, value] : all.items()) {
    if (!trains.contains(key)) left_out.insert(key);
  }
  // clang-format off
  const std::set<std::string> expected = {
      "train", "validation", "test", "labels", "validation-labels", "test-labels", "split-csv", "prefetch",
      "model-dir", "output-dir", "failure-file", "tensorboard-dir", "threads", "device", "comm", "log-level",
      "checkpoint-dir", "checkpoint-every-steps", "checkpoint-every-seconds", "keep-checkpoints", "no-resume",
      "max-bag-bytes", "collective-timeout", "cache-budget"};
  // clang-format on
  EXPECT_EQ(left_out, expected);
  // dsmil_eval's --value-relu is another option than dsmil_train's, which changes the model.
  EXPECT_TRUE(trains.contains("value-relu"));
  EXPECT_TRUE(trains.contains("features-key"));
  EXPECT_FALSE(all.contains("config"));
  EXPECT_FALSE(all.contains("model"));
}

TEST(ReservedKeys, TuningAndToolkitArgumentsAreIgnored) {
  const std::vector<std::string> args = {
      "--_tuning_objective_metric", "validation:auc", "--sagemaker_program", "entry.sh", "--epochs", "3"};
  SageMakerEnvironment local;
  local.root = "/nonexistent/dsmil-tests/opt/ml";
  const ParsedTrainConfig p = parse_train_config(args, local);
  EXPECT_EQ(p.config.epochs, 3);
}

}  // namespace
}  // namespace mil
