// dsmil_train's configuration: SageMaker and local defaults, the four layers and their precedence, the
// SageMaker toolkit's spellings, validation messages that name the option, and --dump-config read back.
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "mil/config/train_config.hpp"
#include "mil/data/bag_index.hpp"
#include "mil/train/checkpoint_state.hpp"
#include "mil/util/error.hpp"
#include "tests/test_util.hpp"

namespace mil {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

void write_text(const std::string& path, const std::string& text) {
  fs::create_directories(fs::path(path).parent_path());
  std::ofstream(path) << text;
}

// An environment with exactly these variables and this /opt/ml root.
SageMakerEnvironment fake_env(const std::string& root, std::map<std::string, std::string> vars = {}) {
  SageMakerEnvironment env;
  env.root = root;
  env.getenv = [vars = std::move(vars)](const std::string& name) -> std::optional<std::string> {
    auto it = vars.find(name);
    return it == vars.end() ? std::nullopt : std::optional<std::string>(it->second);
  };
  return env;
}

// A fake /opt/ml tree with the given channels.
class FakeJob {
 public:
  explicit FakeJob(const std::vector<std::string>& channels = {"train"}) {
    for (const auto& c : channels) fs::create_directories(path("input/data/" + c));
    fs::create_directories(path("model"));
    fs::create_directories(path("output/data"));
    fs::create_directories(path("input/config"));
  }
  std::string root() const { return dir_.path(); }
  std::string path(const std::string& rel) const { return dir_.file(rel); }
  void hyperparameters(const json& hp) const { write_text(path("input/config/hyperparameters.json"), hp.dump()); }

 private:
  test::TempDir dir_;
};

// A machine without SageMaker: no SM_* variables and no /opt/ml.
SageMakerEnvironment local_env() {
  return fake_env("/nonexistent/dsmil/opt/ml");
}

TrainConfig parse(const std::vector<std::string>& args, const SageMakerEnvironment& env = local_env()) {
  return parse_train_config(args, env).config;
}

using test::error_message;

::testing::AssertionResult contains(const std::string& text, const std::string& part) {
  if (text.find(part) != std::string::npos) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << "'" << text << "' does not contain '" << part << "'";
}

TEST(TrainConfig, DefaultsOutsideSageMaker) {
  const ParsedTrainConfig parsed = parse_train_config({}, local_env());
  const TrainConfig& cfg = parsed.config;
  EXPECT_FALSE(parsed.help);
  EXPECT_FALSE(parsed.dump_config);
  EXPECT_EQ(cfg.train_dir, "");
  EXPECT_EQ(cfg.validation_dir, "");
  EXPECT_EQ(cfg.test_dir, "");
  EXPECT_EQ(cfg.labels, "");  // no train dir, nothing to derive it from
  EXPECT_EQ(cfg.model_dir, "model");
  EXPECT_EQ(cfg.output_dir, "output");
  EXPECT_EQ(cfg.failure_file, "");
  EXPECT_EQ(cfg.features_key, "features");
  EXPECT_EQ(cfg.on_bad_slide, "fail");
  EXPECT_EQ(cfg.cache, "auto");
  EXPECT_EQ(cfg.prefetch, 4);
  EXPECT_EQ(cfg.num_classes, 0);
  EXPECT_TRUE(cfg.nonlinear_q);
  EXPECT_FALSE(cfg.passing_v);
  EXPECT_FALSE(cfg.average);
  EXPECT_EQ(cfg.epochs, 50);
  EXPECT_DOUBLE_EQ(cfg.lr, 1e-4);
  EXPECT_DOUBLE_EQ(cfg.weight_decay, 1e-3);
  EXPECT_DOUBLE_EQ(cfg.min_lr, 5e-6);
  EXPECT_EQ(cfg.stop_epochs, 10);
  EXPECT_DOUBLE_EQ(cfg.val_fraction, 0.2);
  EXPECT_EQ(cfg.folds, 0);
  EXPECT_EQ(cfg.fold, -1);
  EXPECT_EQ(cfg.seed, 42u);
  EXPECT_EQ(cfg.device, "auto");
  EXPECT_EQ(cfg.log_level, "info");
  EXPECT_EQ(cfg.config_file, "");
}

TEST(TrainConfig, LabelsDefaultToTheChannelDirectories) {
  const TrainConfig cfg = parse({"--train", "/data/tr", "--validation=/data/va", "--test", "/data/te"});
  EXPECT_EQ(cfg.labels, "/data/tr/labels.csv");
  EXPECT_EQ(cfg.validation_labels, "/data/va/labels.csv");
  EXPECT_EQ(cfg.test_labels, "/data/te/labels.csv");
  EXPECT_EQ(parse({"--train", "/data/tr", "--labels", "/l.csv"}).labels, "/l.csv");
  EXPECT_EQ(parse({"--train", "/data/tr"}).validation_labels, "");
}

TEST(TrainConfig, ScriptModeTakesPathsFromSmVariables) {
  const FakeJob job({"train", "validation"});
  const auto env = fake_env(job.root(), {{"SM_CHANNEL_TRAIN", "/sm/train"},
                                         {"SM_CHANNEL_TEST", "/sm/test"},
                                         {"SM_MODEL_DIR", "/sm/model"},
                                         {"SM_OUTPUT_DATA_DIR", "/sm/output/data"},
                                         {"SM_OUTPUT_DIR", "/sm/output"}});
  const TrainConfig cfg = parse({}, env);
  EXPECT_EQ(cfg.train_dir, "/sm/train");                             // the variable beats the tree
  EXPECT_EQ(cfg.validation_dir, job.path("input/data/validation"));  // no variable: the tree
  EXPECT_EQ(cfg.test_dir, "/sm/test");
  EXPECT_EQ(cfg.labels, "/sm/train/labels.csv");
  EXPECT_EQ(cfg.test_labels, "/sm/test/labels.csv");
  EXPECT_EQ(cfg.model_dir, "/sm/model");
  EXPECT_EQ(cfg.output_dir, "/sm/output/data");
  EXPECT_EQ(cfg.failure_file, "/sm/output/failure");
  // The command line still wins over the environment.
  EXPECT_EQ(parse({"--model-dir", "/elsewhere"}, env).model_dir, "/elsewhere");
}

TEST(TrainConfig, BringYourOwnContainerReadsTheOptMlTree) {
  const FakeJob job({"train", "validation"});
  job.hyperparameters({{"epochs", "7"}, {"average", "True"}});
  // `docker run <image> train`: no SM_* variables, and the single argument "train".
  const TrainConfig cfg = parse({"train"}, fake_env(job.root()));
  EXPECT_EQ(cfg.train_dir, job.path("input/data/train"));
  EXPECT_EQ(cfg.validation_dir, job.path("input/data/validation"));
  EXPECT_EQ(cfg.test_dir, "");  // no such channel in this job
  EXPECT_EQ(cfg.labels, job.path("input/data/train/labels.csv"));
  EXPECT_EQ(cfg.model_dir, job.path("model"));
  EXPECT_EQ(cfg.output_dir, job.path("output/data"));
  EXPECT_EQ(cfg.failure_file, job.path("output/failure"));
  EXPECT_EQ(cfg.epochs, 7);
  EXPECT_TRUE(cfg.average);
  EXPECT_NO_THROW(validate(cfg));
}

TEST(TrainConfig, CheckpointDirectoryOfTheJob) {
  // Without checkpoint_s3_uri: next to the outputs.
  const FakeJob job;
  EXPECT_EQ(parse({}, fake_env(job.root())).checkpoint_dir, job.path("output/data/checkpoints"));
  EXPECT_EQ(parse({}).checkpoint_dir, "output/checkpoints");
  // With it: /opt/ml/checkpoints, or where checkpointconfig.json says.
  fs::create_directories(job.path("checkpoints"));
  EXPECT_EQ(parse({}, fake_env(job.root())).checkpoint_dir, job.path("checkpoints"));
  write_text(job.path("input/config/checkpointconfig.json"), R"({"LocalPath": "/ckpt/here", "S3Uri": "s3://b/c"})");
  EXPECT_EQ(parse({}, fake_env(job.root())).checkpoint_dir, "/ckpt/here");
  EXPECT_EQ(parse({"--checkpoint-dir", "/mine"}, fake_env(job.root())).checkpoint_dir, "/mine");
  write_text(job.path("input/config/checkpointconfig.json"), "{not json");
  EXPECT_TRUE(contains(error_message([&] { parse({}, fake_env(job.root())); }), "checkpointconfig.json"));
}

TEST(TrainConfig, FromProcessHonoursTheRootOverride) {
  const test::TempDir dir;
  ASSERT_EQ(setenv("DSMIL_SAGEMAKER_ROOT", dir.path().c_str(), 1), 0);
  const SageMakerEnvironment env = SageMakerEnvironment::from_process();
  unsetenv("DSMIL_SAGEMAKER_ROOT");
  EXPECT_EQ(env.root, dir.path());
  EXPECT_EQ(environment_defaults(env).model_dir, dir.file("model"));
  EXPECT_EQ(SageMakerEnvironment::from_process().root, "/opt/ml");
}

TEST(TrainConfig, HyperparametersInEverySpelling) {
  const FakeJob job;
  job.hyperparameters({
      {"epochs", "5"},                    // plain string, as the generic Estimator writes it
      {"lr", "0.0002"},                   // a number as a string
      {"weight_decay", "\"0.01\""},       // a JSON-encoded string, as framework estimators write it
      {"cache", "\"ram\""},               // ditto for a string option
      {"features_key", "feats"},          // underscores...
      {"on-bad-slide", "skip"},           // ...and dashes
      {"nonlinear_q", "False"},           // Python's str(False)
      {"passing_v", "true"},              // JSON's true
      {"standardize", "1"},               //
      {"average", true},                  // a real JSON boolean
      {"seed", 7},                        // a real JSON number
      {"negative_label", "\"normal\""},   //
      {"sagemaker_program", "\"x.py\""},  // the toolkit's own keys are ignored
      {"sagemaker_submit_directory", "s3://bucket/src.tar.gz"},
      {"sagemaker_mpi_enabled", "true"},
  });
  const TrainConfig cfg = parse({}, fake_env(job.root()));
  EXPECT_EQ(cfg.epochs, 5);
  EXPECT_DOUBLE_EQ(cfg.lr, 0.0002);
  EXPECT_DOUBLE_EQ(cfg.weight_decay, 0.01);
  EXPECT_EQ(cfg.cache, "ram");
  EXPECT_EQ(cfg.features_key, "feats");
  EXPECT_EQ(cfg.on_bad_slide, "skip");
  EXPECT_FALSE(cfg.nonlinear_q);
  EXPECT_TRUE(cfg.passing_v);
  EXPECT_TRUE(cfg.standardize);
  EXPECT_TRUE(cfg.average);
  EXPECT_EQ(cfg.seed, 7u);
  EXPECT_EQ(cfg.negative_label, "normal");
}

TEST(TrainConfig, KeysATuningJobAddsAreIgnored) {
  // A hyperparameter tuning job adds its objective with a leading '_'; the toolkit passes it on as an argument.
  const FakeJob job;
  job.hyperparameters({{"epochs", "5"},
                       {"_tuning_objective_metric", "\"validation:auc\""},
                       {"sagemaker_estimator_class_name", "\"PyTorch\""}});
  EXPECT_EQ(parse({}, fake_env(job.root())).epochs, 5);
  const TrainConfig cfg =
      parse({"--_tuning_objective_metric", "validation:auc", "--epochs", "3", "--_tuning_flag", "--lr", "0.5"});
  EXPECT_EQ(cfg.epochs, 3);
  EXPECT_DOUBLE_EQ(cfg.lr, 0.5);
  // Only a leading '_' is reserved: an unknown key with '_' inside is still an error.
  job.hyperparameters({{"tuning_objective_metric", "x"}});
  EXPECT_TRUE(contains(error_message([&] { parse({}, fake_env(job.root())); }), "unknown hyperparameter"));
}

TEST(TrainConfig, UnknownHyperparameterListsTheKnownOnes) {
  const FakeJob job;
  job.hyperparameters({{"epochs", "5"}, {"learning_rate", "0.1"}});
  const std::string msg = error_message([&] { parse({}, fake_env(job.root())); });
  EXPECT_TRUE(contains(msg, "hyperparameters.json"));
  EXPECT_TRUE(contains(msg, "learning_rate"));
  EXPECT_TRUE(contains(msg, "known"));
  EXPECT_TRUE(contains(msg, "weight-decay"));
  EXPECT_TRUE(contains(msg, "nonlinear-q"));
}

TEST(TrainConfig, BadHyperparametersNameTheFileTheOptionAndTheValue) {
  const FakeJob job;
  job.hyperparameters({{"epochs", "abc"}});
  std::string msg = error_message([&] { parse({}, fake_env(job.root())); });
  EXPECT_TRUE(contains(msg, "hyperparameters.json"));
  EXPECT_TRUE(contains(msg, "--epochs"));
  EXPECT_TRUE(contains(msg, "abc"));

  job.hyperparameters({{"lr", json::array({1, 2})}});
  EXPECT_TRUE(contains(error_message([&] { parse({}, fake_env(job.root())); }), "--lr"));

  job.hyperparameters({{"nonlinear_q", "0"}, {"nonlinear-q", "1"}});
  EXPECT_TRUE(contains(error_message([&] { parse({}, fake_env(job.root())); }), "twice"));

  write_text(job.path("input/config/hyperparameters.json"), "{\"epochs\": ");
  msg = error_message([&] { parse({}, fake_env(job.root())); });
  EXPECT_TRUE(contains(msg, "hyperparameters.json"));
  EXPECT_TRUE(contains(msg, "not valid JSON"));
}

TEST(TrainConfig, PrecedenceDefaultsConfigHyperparametersCommandLine) {
  const FakeJob job;
  const std::string config = job.path("config.json");
  write_text(config, json({{"epochs", 7}, {"lr", 0.5}, {"weight-decay", 0.25}, {"min_lr", 0.125}}).dump());
  job.hyperparameters({{"lr", "0.05"}, {"weight_decay", "0.025"}, {"min_lr", "0.0125"}});
  const TrainConfig cfg = parse({"--config", config, "--min-lr", "0.00125"}, fake_env(job.root()));
  EXPECT_EQ(cfg.stop_epochs, 10);  // defaults: set by no layer
  EXPECT_EQ(cfg.epochs, 7);        // config file: set only there
  EXPECT_DOUBLE_EQ(cfg.lr, 0.05);  // hyperparameters.json beats the config file
  EXPECT_DOUBLE_EQ(cfg.weight_decay, 0.025);
  EXPECT_DOUBLE_EQ(cfg.min_lr, 0.00125);  // the command line beats everything
  EXPECT_EQ(cfg.config_file, config);
  EXPECT_EQ(cfg.train_dir, job.path("input/data/train"));  // environment defaults stay below all layers

  // The config file may also be named by a hyperparameter, and still ranks below hyperparameters.json.
  job.hyperparameters({{"config", config}, {"lr", "0.05"}});
  const TrainConfig from_hp = parse({}, fake_env(job.root()));
  EXPECT_EQ(from_hp.epochs, 7);
  EXPECT_DOUBLE_EQ(from_hp.lr, 0.05);
  EXPECT_DOUBLE_EQ(from_hp.weight_decay, 0.25);

  // The config file overrides environment-derived path defaults.
  write_text(config, json({{"model-dir", "/cfg/model"}}).dump());
  EXPECT_EQ(parse({"--config", config}, fake_env(job.root(), {{"SM_MODEL_DIR", "/sm/model"}})).model_dir, "/cfg/model");
}

TEST(TrainConfig, ToolkitStyleArguments) {
  // What the training toolkit runs: dict keys as written, sorted, values str()-ed.
  const TrainConfig cfg = parse({"--average", "True", "--dropout_patch", "0.5", "--epochs", "3", "--features_key",
                                 "\"feats\"", "--lr", "0.0002", "--nonlinear_q", "False", "--passing_v", "1",
                                 "--sagemaker_program", "train.py", "--seed=9", "--train", "/d"});
  EXPECT_TRUE(cfg.average);
  EXPECT_DOUBLE_EQ(cfg.dropout_patch, 0.5);
  EXPECT_EQ(cfg.epochs, 3);
  EXPECT_EQ(cfg.features_key, "feats");
  EXPECT_DOUBLE_EQ(cfg.lr, 0.0002);
  EXPECT_FALSE(cfg.nonlinear_q);
  EXPECT_TRUE(cfg.passing_v);
  EXPECT_EQ(cfg.seed, 9u);
  EXPECT_EQ(cfg.train_dir, "/d");
}

TEST(TrainConfig, BooleanSpellings) {
  for (const char* t : {"True", "true", "1"}) {
    EXPECT_TRUE(parse({"--passing-v", t}).passing_v) << t;
    EXPECT_TRUE(parse({std::string("--passing_v=") + t}).passing_v) << t;
  }
  for (const char* f : {"False", "false", "0"}) {
    EXPECT_FALSE(parse({"--nonlinear-q", f}).nonlinear_q) << f;
    EXPECT_FALSE(parse({std::string("--nonlinear_q=") + f}).nonlinear_q) << f;
  }
  // A bare flag means true, also when another option follows.
  const TrainConfig cfg = parse({"--passing-v", "--standardize", "--epochs", "2", "--average"});
  EXPECT_TRUE(cfg.passing_v);
  EXPECT_TRUE(cfg.standardize);
  EXPECT_TRUE(cfg.average);
  EXPECT_EQ(cfg.epochs, 2);
}

TEST(TrainConfig, ValuesOfEveryKind) {
  const TrainConfig cfg = parse({"--negative-label=", "--lr", "-1", "--fold", "-1", "--num-classes", "3", "--device",
                                 "cuda:1", "--seed", "18446744073709551615"});
  EXPECT_EQ(cfg.negative_label, "");
  EXPECT_DOUBLE_EQ(cfg.lr, -1);  // a negative number is a value, not an option; validate() rejects it
  EXPECT_EQ(cfg.fold, -1);
  EXPECT_EQ(cfg.num_classes, 3);
  EXPECT_EQ(cfg.device, "cuda:1");
  EXPECT_EQ(cfg.seed, 18446744073709551615u);
}

TEST(TrainConfig, BadValuesNameTheOptionAndTheValue) {
  const std::vector<std::vector<std::string>> cases = {
      {"--epochs", "abc"},          {"--epochs=1.5"},  {"--lr", "fast"},
      {"--passing-v", "maybe"},     {"--average=yes"}, {"--seed", "-1"},
      {"--prefetch", "9999999999"},
  };
  for (const auto& args : cases) {
    const std::string msg = error_message([&] { parse(args); });
    const std::string option = args[0].substr(0, args[0].find('='));
    const std::string value = args.size() > 1 ? args[1] : args[0].substr(args[0].find('=') + 1);
    EXPECT_TRUE(contains(msg, option));
    EXPECT_TRUE(contains(msg, "'" + value + "'"));
    EXPECT_EQ(msg.find('\n'), std::string::npos) << msg;
  }
  EXPECT_TRUE(contains(error_message([] { parse({"--epochs"}); }), "epochs"));  // value missing
}

TEST(TrainConfig, UnknownOptionsAndStrayArguments) {
  std::string msg = error_message([] { parse({"--epoch", "3"}); });
  EXPECT_TRUE(contains(msg, "unknown option --epoch"));
  EXPECT_TRUE(contains(msg, "epochs"));  // the known ones are listed
  EXPECT_TRUE(contains(error_message([] { parse({"--learning_rate=1"}); }), "--learning-rate"));
  EXPECT_TRUE(contains(error_message([] { parse({"-x"}); }), "-x"));
  EXPECT_TRUE(contains(error_message([] { parse({"--epochs", "3", "extra"}); }), "unexpected argument 'extra'"));
  // One "train" argument, as SageMaker passes it to a bring-your-own container; no more.
  EXPECT_TRUE(contains(error_message([] { parse({"--epochs", "3", "train", "train"}); }), "unexpected argument"));
  EXPECT_EQ(parse({"train", "--epochs", "3"}).epochs, 3);
  // The toolkit's own arguments, with or without a value.
  EXPECT_EQ(parse({"--sagemaker_program", "x.py", "--sagemaker-region=eu", "--sagemaker_flag", "--epochs", "4"}).epochs,
            4);
}

TEST(TrainConfig, HelpDocumentsEveryOptionWithItsDefault) {
  const FakeJob job;
  write_text(job.path("input/config/hyperparameters.json"), "not json");  // --help must not read it
  const ParsedTrainConfig parsed = parse_train_config({"--help"}, fake_env(job.root()));
  EXPECT_TRUE(parsed.help);
  const std::string& help = parsed.help_text;
  const json options = to_json(TrainConfig{});
  for (const auto& [key, value] : options.items()) EXPECT_TRUE(contains(help, "--" + key));
  EXPECT_TRUE(contains(help, "--config"));
  EXPECT_TRUE(contains(help, "--dump-config"));
  EXPECT_TRUE(contains(help, "(default: 50)"));                         // epochs
  EXPECT_TRUE(contains(help, "(default: 0.0001)"));                     // lr
  EXPECT_TRUE(contains(help, "(default: fail)"));                       // on-bad-slide
  EXPECT_TRUE(contains(help, "(default: " + job.path("model") + ")"));  // this environment's default
  EXPECT_TRUE(parse_train_config({"-h"}, local_env()).help);
}

TEST(TrainConfig, DumpConfigRoundTripsThroughConfig) {
  const std::vector<std::string> args = {"--train",
                                         "/d/train",
                                         "--validation",
                                         "/d/val",
                                         "--split-csv",
                                         "/d/splits_0.csv",
                                         "--features-key",
                                         "x",
                                         "--negative-label",
                                         "normal",
                                         "--on-bad-slide",
                                         "skip",
                                         "--cache",
                                         "ram32",
                                         "--prefetch",
                                         "2",
                                         "--model-dir",
                                         "/m",
                                         "--failure-file",
                                         "/f",
                                         "--num-classes",
                                         "3",
                                         "--nonlinear-q=false",
                                         "--passing-v",
                                         "--dropout-node",
                                         "0.1",
                                         "--dropout-patch",
                                         "0.3",
                                         "--average",
                                         "--epochs",
                                         "12",
                                         "--lr",
                                         "0.00031",
                                         "--weight-decay",
                                         "0",
                                         "--min-lr",
                                         "1e-07",
                                         "--stop-epochs",
                                         "4",
                                         "--folds",
                                         "5",
                                         "--fold",
                                         "2",
                                         "--standardize",
                                         "--seed",
                                         "18446744073709551615",
                                         "--threads",
                                         "3",
                                         "--device",
                                         "cuda:0",
                                         "--log-level",
                                         "debug",
                                         "--dump-config"};
  const ParsedTrainConfig parsed = parse_train_config(args, local_env());
  EXPECT_TRUE(parsed.dump_config);
  const json dumped = to_json(parsed.config);
  EXPECT_EQ(dumped["weight-decay"], 0.0);
  EXPECT_EQ(dumped["nonlinear-q"], false);
  EXPECT_EQ(dumped["seed"], 18446744073709551615u);
  EXPECT_EQ(dumped["validation-labels"], "/d/val/labels.csv");
  EXPECT_FALSE(dumped.contains("config"));
  EXPECT_NO_THROW(validate(parsed.config));

  const test::TempDir dir;
  write_text(dir.file("effective.json"), dumped.dump(2));
  const TrainConfig reread = parse({"--config", dir.file("effective.json")});
  EXPECT_EQ(to_json(reread), dumped);
  EXPECT_EQ(reread.config_file, dir.file("effective.json"));
}

TEST(TrainConfig, BadConfigFilesNameTheFile) {
  const test::TempDir dir;
  const std::string path = dir.file("c.json");
  const auto msg_for = [&](const std::string& text) {
    write_text(path, text);
    return error_message([&] { parse({"--config", path}); });
  };
  EXPECT_TRUE(contains(msg_for("{\"epochz\": 3}"), "unknown option 'epochz'"));
  EXPECT_TRUE(contains(msg_for("{\"epochz\": 3}"), path));
  EXPECT_TRUE(contains(msg_for("{\"config\": \"other.json\"}"), "--config"));
  EXPECT_TRUE(contains(msg_for("[1, 2]"), "JSON object"));
  EXPECT_TRUE(contains(msg_for("{\"epochs\": 2.5}"), "--epochs"));
  EXPECT_TRUE(contains(msg_for("{\"epochs\": null}"), "--epochs"));
  EXPECT_TRUE(contains(error_message([&] { parse({"--config", dir.file("missing.json")}); }), "missing.json"));
}

TEST(TrainConfig, ValidationNamesTheOption) {
  TrainConfig valid;
  valid.train_dir = "/d";
  EXPECT_NO_THROW(validate(valid));
  for (const char* device : {"auto", "cpu", "cuda", "cuda:0", "cuda:12"}) {
    TrainConfig cfg = valid;
    cfg.device = device;
    EXPECT_NO_THROW(validate(cfg)) << device;
  }
  {
    TrainConfig cfg = valid;
    cfg.folds = 5;
    cfg.fold = 4;
    EXPECT_NO_THROW(validate(cfg));
  }

  struct Case {
    std::function<void(TrainConfig&)> change;
    std::string expected;  // part of the message
  };
  const std::vector<Case> cases = {
      {[](TrainConfig& c) { c.train_dir = ""; }, "no training data: pass --train DIR or set SM_CHANNEL_TRAIN"},
      {[](TrainConfig& c) { c.epochs = 0; }, "--epochs must be >= 1 (got 0)"},
      {[](TrainConfig& c) { c.lr = 0; }, "--lr must be > 0"},
      {[](TrainConfig& c) { c.lr = -1; }, "--lr must be > 0 (got -1)"},
      {[](TrainConfig& c) { c.weight_decay = -0.5; }, "--weight-decay"},
      {[](TrainConfig& c) { c.min_lr = -1; }, "--min-lr"},
      {[](TrainConfig& c) { c.stop_epochs = 0; }, "--stop-epochs"},
      {[](TrainConfig& c) { c.accumulate = 0; }, "--accumulate must be >= 1 (got 0)"},
      {[](TrainConfig& c) { c.bags_per_step = 0; }, "--bags-per-step must be >= 1 (got 0)"},
      {[](TrainConfig& c) {
         c.bags_per_step = 4;
         c.precision = "bf16";
       },
       "--precision must be fp32 with --bags-per-step > 1 (got 'bf16')"},
      {[](TrainConfig& c) { c.dropout_patch = 1; }, "--dropout-patch"},
      {[](TrainConfig& c) { c.dropout_patch = -0.1; }, "--dropout-patch"},
      {[](TrainConfig& c) { c.dropout_node = 1; }, "--dropout-node"},
      {[](TrainConfig& c) { c.dropout_node = -0.1; }, "--dropout-node"},
      {[](TrainConfig& c) { c.val_fraction = 1; }, "--val-fraction"},
      {[](TrainConfig& c) { c.val_fraction = -0.2; }, "--val-fraction"},
      {[](TrainConfig& c) { c.folds = 1; }, "--folds"},
      {[](TrainConfig& c) { c.folds = -2; }, "--folds"},
      {[](TrainConfig& c) { c.fold = 0; }, "--fold 0 needs --folds"},
      {[](TrainConfig& c) { c.folds = 5, c.fold = 5; }, "--fold must be"},
      {[](TrainConfig& c) { c.folds = 5, c.fold = -2; }, "--fold must be"},
      {[](TrainConfig& c) { c.on_bad_slide = "maybe"; }, "--on-bad-slide must be fail or skip (got 'maybe')"},
      {[](TrainConfig& c) { c.cache = "disk"; }, "--cache"},
      {[](TrainConfig& c) { c.cache = "gpu"; }, "--cache-budget must be > 0 with --cache gpu"},
      {[](TrainConfig& c) { c.precision = "fp16"; }, "--precision must be fp32 or bf16 (got 'fp16')"},
      {[](TrainConfig& c) { c.device = "gpu"; }, "--device"},
      {[](TrainConfig& c) { c.device = "cuda:"; }, "--device"},
      {[](TrainConfig& c) { c.device = "cuda:x"; }, "--device"},
      {[](TrainConfig& c) { c.comm = "tcp"; }, "--comm must be auto, mpi, gloo or nccl (got 'tcp')"},
      {[](TrainConfig& c) { c.prefetch = 0; }, "--prefetch"},
      {[](TrainConfig& c) { c.max_bag_bytes = 0; }, "--max-bag-bytes must be >= 1"},
      {[](TrainConfig& c) { c.collective_timeout = -1; }, "--collective-timeout must be >= 0"},
      {[](TrainConfig& c) { c.num_classes = -1; }, "--num-classes"},
      {[](TrainConfig& c) { c.threads = -1; }, "--threads"},
      {[](TrainConfig& c) { c.log_level = "loud"; }, "--log-level"},
      {[](TrainConfig& c) { c.features_key = ""; }, "--features-key"},
      {[](TrainConfig& c) { c.value_relu = false; }, "--value-relu false needs --passing-v"},
      // --tensorboard-dir none turns TensorBoard off; checkpoints cannot be, and no folder named none is made.
      {[](TrainConfig& c) { c.checkpoint_dir = "none"; }, "--checkpoint-dir must be a directory (checkpoints"},
  };
  for (const Case& c : cases) {
    TrainConfig cfg = valid;
    c.change(cfg);
    EXPECT_TRUE(contains(error_message([&] { validate(cfg); }), c.expected));
  }
}

TEST(TrainConfig, OnBadSlideFromTheCommandLineFailsValidation) {
  const TrainConfig cfg = parse({"--train", "/d", "--on-bad-slide", "maybe"});
  const std::string msg = error_message([&] { validate(cfg); });
  EXPECT_TRUE(contains(msg, "--on-bad-slide"));
  EXPECT_TRUE(contains(msg, "maybe"));
}

TEST(TrainConfig, LimitsParseAndAreNotTrainingSettings) {
  const TrainConfig cfg = parse({"--train", "/d", "--max-bag-bytes", "1000000", "--collective-timeout", "30"});
  EXPECT_EQ(cfg.max_bag_bytes, 1000000);
  EXPECT_EQ(cfg.collective_timeout, 30);
  EXPECT_EQ(TrainConfig{}.max_bag_bytes, kDefaultMaxBagBytes);  // the index's own default
  EXPECT_FALSE(training_settings(cfg).contains("max-bag-bytes"));
  EXPECT_FALSE(training_settings(cfg).contains("collective-timeout"));
}

}  // namespace
}  // namespace mil
