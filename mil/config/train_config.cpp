#include "mil/config/train_config.hpp"

#include <algorithm>
#include <cctype>
#include <cstdlib>
#include <filesystem>

#include "mil/config/options.hpp"
#include "mil/io/files.hpp"
#include "mil/util/error.hpp"

namespace mil {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

bool directory_exists(const fs::path& p) {
  std::error_code ec;
  return fs::is_directory(p, ec);
}

bool file_exists(const fs::path& p) {
  std::error_code ec;
  return fs::exists(p, ec);
}

}  // namespace

SageMakerEnvironment SageMakerEnvironment::from_process() {
  SageMakerEnvironment env;
  env.getenv = [](const std::string& name) -> std::optional<std::string> {
    const char* v = std::getenv(name.c_str());
    return v ? std::optional<std::string>(v) : std::nullopt;
  };
  if (auto root = env.getenv("DSMIL_SAGEMAKER_ROOT")) env.root = *root;
  return env;
}

TrainConfig environment_defaults(const SageMakerEnvironment& env) {
  const auto var = [&](const char* name) -> std::optional<std::string> {
    std::optional<std::string> v = env.getenv ? env.getenv(name) : std::nullopt;
    return v && !v->empty() ? v : std::nullopt;
  };
  const fs::path root(env.root);
  const bool in_job = directory_exists(root);
  // A bring-your-own container gets no SM_* variables: a channel is then its directory, present only when
  // the job was given that channel.
  const auto channel = [&](const char* variable, const char* name) {
    if (auto v = var(variable)) return *v;
    const fs::path dir = root / "input" / "data" / name;
    return directory_exists(dir) ? dir.string() : std::string();
  };
  TrainConfig cfg;
  cfg.train_dir = channel("SM_CHANNEL_TRAIN", "train");
  cfg.validation_dir = channel("SM_CHANNEL_VALIDATION", "validation");
  cfg.test_dir = channel("SM_CHANNEL_TEST", "test");
  cfg.model_dir = var("SM_MODEL_DIR").value_or(in_job ? (root / "model").string() : "model");
  cfg.output_dir = var("SM_OUTPUT_DATA_DIR").value_or(in_job ? (root / "output" / "data").string() : "output");
  if (auto output = var("SM_OUTPUT_DIR")) {
    cfg.failure_file = (fs::path(*output) / "failure").string();
  } else if (directory_exists(root / "output")) {
    cfg.failure_file = (root / "output" / "failure").string();
  }
  return cfg;
}

ParsedTrainConfig parse_train_config(const std::vector<std::string>& args, const SageMakerEnvironment& env) {
  ParsedTrainConfig out;
  out.config = environment_defaults(env);
  const CommandLine cli = parse_command_line(
      args, out.config,
      "Trains a DSMIL aggregator on per-slide patch features, in a SageMaker training job or locally.\n"
      "Settings, lowest precedence first: defaults (paths from SM_* variables, else " +
          env.root + "), --config FILE, " + env.root +
          "/input/config/hyperparameters.json, the command line.\n"
          "Names take '-' or '_'; values '--key value' or '--key=value'; booleans true/false/True/False/1/0.\n");
  out.help_text = cli.help_text;
  // --help must work whatever the config files hold, so it returns before reading them.
  out.help = cli.help;
  if (out.help) return out;
  out.dump_config = cli.dump_config;

  const std::string hp_path = (fs::path(env.root) / "input" / "config" / "hyperparameters.json").string();
  const Layer hyperparameters = file_exists(hp_path) ? json_layer(hp_path, false) : Layer{};
  // The config file is the lowest layer but is named in a higher one.
  std::string config_path = value_of(cli.layer, "config");
  if (config_path.empty()) config_path = value_of(hyperparameters, "config");
  TrainConfig& cfg = out.config;
  if (!config_path.empty()) apply(cfg, json_layer(config_path, true));
  apply(cfg, hyperparameters);
  apply(cfg, cli.layer);

  const auto default_labels = [](std::string& labels, const std::string& dir) {
    if (labels.empty() && !dir.empty()) labels = (fs::path(dir) / "labels.csv").string();
  };
  default_labels(cfg.labels, cfg.train_dir);
  default_labels(cfg.validation_labels, cfg.validation_dir);
  default_labels(cfg.test_labels, cfg.test_dir);
  if (cfg.checkpoint_dir.empty()) {
    // SageMaker syncs the checkpoint directory with checkpoint_s3_uri: checkpointconfig.json names it when the
    // job asks for one (default /opt/ml/checkpoints, which exists only then).
    const fs::path job_config = fs::path(env.root) / "input" / "config" / "checkpointconfig.json";
    const fs::path job_dir = fs::path(env.root) / "checkpoints";
    if (file_exists(job_config)) {
      try {
        cfg.checkpoint_dir = json::parse(io::read_file(job_config.string())).value("LocalPath", job_dir.string());
      } catch (const json::exception& e) {
        throw Error(job_config.string(), "LocalPath", std::string("unreadable: ") + e.what());
      }
    } else {
      cfg.checkpoint_dir =
          directory_exists(job_dir) ? job_dir.string() : (fs::path(cfg.output_dir) / "checkpoints").string();
    }
  }
  if (cfg.tensorboard_dir.empty()) {
    // SageMaker's TensorBoardOutputConfig uploads <root>/output/tensorboard (its default local path) while the
    // job runs; locally the events go next to the metrics.
    const fs::path root(env.root);
    cfg.tensorboard_dir = directory_exists(root) ? (root / "output" / "tensorboard").string()
                                                 : (fs::path(cfg.output_dir) / "tensorboard").string();
  }
  return out;
}

bool tensorboard_enabled(const TrainConfig& cfg) {
  return !cfg.tensorboard_dir.empty() && cfg.tensorboard_dir != "none";
}

void validate(const TrainConfig& cfg) {
  const auto check = require_option;
  const auto quoted = [](const std::string& s) { return "'" + s + "'"; };

  if (cfg.train_dir.empty()) throw Error("no training data: pass --train DIR or set SM_CHANNEL_TRAIN");
  check(!cfg.features_key.empty(), "features-key", "an HDF5 dataset name", "''");
  check(cfg.cache == "auto" || cfg.cache == "none" || cfg.cache == "ram" || cfg.cache == "ram32" || cfg.cache == "gpu",
        "cache", "auto, none, ram, ram32 or gpu", quoted(cfg.cache));
  check(cfg.precision == "fp32" || cfg.precision == "bf16", "precision", "fp32 or bf16", quoted(cfg.precision));
  // The packed step multiplies in float32 only (mil::PackedStep); bf16 is for WSI-sized bags anyway.
  check(cfg.precision == "fp32" || cfg.bags_per_step == 1, "precision", "fp32 with --bags-per-step > 1",
        quoted(cfg.precision));
  check(cfg.cache_budget >= 0, "cache-budget", ">= 0 (GB; 0 = no bound)", option_text(cfg.cache_budget));
  check(cfg.cache != "gpu" || cfg.cache_budget > 0, "cache-budget",
        "> 0 with --cache gpu (the GB of GPU memory the features may take; the training step needs the rest)",
        option_text(cfg.cache_budget));
  check(cfg.max_bag_bytes >= 1, "max-bag-bytes", ">= 1", option_text(static_cast<double>(cfg.max_bag_bytes)));
  check(cfg.collective_timeout >= 0, "collective-timeout", ">= 0 (0 = wait forever)",
        option_text(cfg.collective_timeout));
  check(cfg.checkpoint_dir != "none", "checkpoint-dir",
        "a directory (checkpoints cannot be turned off: they are how a stopped or reclaimed job resumes)", "'none'");
  check(cfg.checkpoint_every_steps >= 0, "checkpoint-every-steps", ">= 0 (0 = off)",
        option_text(cfg.checkpoint_every_steps));
  check(cfg.checkpoint_every_seconds >= 0, "checkpoint-every-seconds", ">= 0 (0 = off)",
        option_text(cfg.checkpoint_every_seconds));
  check(cfg.keep_checkpoints >= 1, "keep-checkpoints", ">= 1", option_text(cfg.keep_checkpoints));
  check(cfg.num_classes >= 0, "num-classes", ">= 0", option_text(cfg.num_classes));
  check(cfg.dropout_node >= 0 && cfg.dropout_node < 1, "dropout-node", "in [0, 1)", option_text(cfg.dropout_node));
  if (!cfg.value_relu && !cfg.passing_v)
    throw Error("--value-relu false needs --passing-v (without it v is the identity)");
  check(cfg.dropout_patch >= 0 && cfg.dropout_patch < 1, "dropout-patch", "in [0, 1)", option_text(cfg.dropout_patch));
  check(cfg.epochs >= 1, "epochs", ">= 1", option_text(cfg.epochs));
  check(cfg.lr > 0, "lr", "> 0", option_text(cfg.lr));
  check(cfg.weight_decay >= 0, "weight-decay", ">= 0", option_text(cfg.weight_decay));
  check(cfg.min_lr >= 0, "min-lr", ">= 0", option_text(cfg.min_lr));
  check(cfg.stop_epochs >= 1, "stop-epochs", ">= 1", option_text(cfg.stop_epochs));
  check(cfg.accumulate >= 1, "accumulate", ">= 1", option_text(cfg.accumulate));
  check(cfg.bags_per_step >= 1, "bags-per-step", ">= 1", option_text(cfg.bags_per_step));
  check(cfg.val_fraction >= 0 && cfg.val_fraction < 1, "val-fraction", "in [0, 1)", option_text(cfg.val_fraction));
  check(cfg.folds == 0 || cfg.folds >= 2, "folds", "0 (off) or >= 2", option_text(cfg.folds));
  if (cfg.fold != -1 && cfg.folds == 0) throw Error("--fold " + option_text(cfg.fold) + " needs --folds K");
  check(cfg.fold >= -1 && cfg.fold < cfg.folds, "fold", "-1 (all) or in [0, " + option_text(cfg.folds) + ")",
        option_text(cfg.fold));
  check(cfg.comm == "auto" || cfg.comm == "mpi" || cfg.comm == "gloo" || cfg.comm == "nccl", "comm",
        "auto, mpi, gloo or nccl", "'" + cfg.comm + "'");
  validate_runtime_options(cfg.on_bad_slide, cfg.prefetch, cfg.threads, cfg.device, cfg.log_level);
}

json to_json(const TrainConfig& cfg) {
  return options_to_json(cfg);
}

}  // namespace mil
