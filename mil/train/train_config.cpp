#include "mil/train/train_config.hpp"

#include <algorithm>
#include <cctype>
#include <cstdlib>
#include <cxxopts.hpp>
#include <filesystem>
#include <limits>
#include <set>
#include <sstream>
#include <type_traits>
#include <variant>

#include "mil/io/files.hpp"
#include "mil/util/error.hpp"

namespace mil {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

using Field = std::variant<std::string TrainConfig::*, bool TrainConfig::*, int TrainConfig::*, int64_t TrainConfig::*,
                           uint64_t TrainConfig::*, double TrainConfig::*>;

// One option, shared by the command line, the config file, hyperparameters.json, --help and to_json.
struct OptionSpec {
  const char* group;  // --help section
  const char* name;   // canonical spelling, with '-'
  Field field;
  const char* arg;   // value placeholder in --help
  const char* help;  // --help text; cxxopts appends the default
};

const char kConfigOption[] = "config";
const std::vector<std::string> kGroups = {"Channels",     "Outputs", "Checkpoints", "Model",
                                          "Optimisation", "Splits",  "Runtime",     "General"};

// clang-format off
const OptionSpec kOptions[] = {
    {"Channels", "train", &TrainConfig::train_dir, "DIR", "Training channel: per-slide .h5 feature files [SM_CHANNEL_TRAIN]"},
    {"Channels", "validation", &TrainConfig::validation_dir, "DIR",
     "Validation channel [SM_CHANNEL_VALIDATION]; without it the validation set is split from --train"},
    {"Channels", "test", &TrainConfig::test_dir, "DIR", "Test channel [SM_CHANNEL_TEST]"},
    {"Channels", "labels", &TrainConfig::labels, "CSV", "Slide labels of --train (default: <train>/labels.csv)"},
    {"Channels", "validation-labels", &TrainConfig::validation_labels, "CSV",
     "Slide labels of --validation (default: <validation>/labels.csv)"},
    {"Channels", "test-labels", &TrainConfig::test_labels, "CSV", "Slide labels of --test (default: <test>/labels.csv)"},
    {"Channels", "split-csv", &TrainConfig::split_csv, "CSV", "CLAM splits_k.csv with train/val/test columns"},
    {"Channels", "features-key", &TrainConfig::features_key, "NAME", "HDF5 dataset holding the [N, D] features"},
    {"Channels", "negative-label", &TrainConfig::negative_label, "LABEL", "Label value meaning \"no positive class\""},
    {"Channels", "on-bad-slide", &TrainConfig::on_bad_slide, "fail|skip", "What to do with an unreadable slide"},
    {"Channels", "cache", &TrainConfig::cache, "none|ram|ram32",
     "Keep features in memory, training and validation bags, across folds (ram: float16, ram32: float32)"},
    {"Channels", "cache-budget", &TrainConfig::cache_budget, "GB",
     "Most RAM the --cache may hold; bags beyond it are read from disk each time (same values); 0 = no bound"},
    {"Channels", "prefetch", &TrainConfig::prefetch, "N", "Bags read ahead in the background"},
    {"Outputs", "model-dir", &TrainConfig::model_dir, "DIR", "Where the model is saved [SM_MODEL_DIR]"},
    {"Outputs", "output-dir", &TrainConfig::output_dir, "DIR", "Metrics and predictions [SM_OUTPUT_DATA_DIR]"},
    {"Outputs", "failure-file", &TrainConfig::failure_file, "FILE", "Where the reason for a failure is written"},
    {"Outputs", "tensorboard-dir", &TrainConfig::tensorboard_dir, "DIR|none",
     "TensorBoard event files, written at each epoch end (default: <root>/output/tensorboard when the SageMaker "
     "root exists, where TensorBoardOutputConfig uploads from, else <output-dir>/tensorboard); none = off"},
    {"Checkpoints", "checkpoint-dir", &TrainConfig::checkpoint_dir, "DIR",
     "Where checkpoints are written and resumed from (default: LocalPath of the job's checkpointconfig.json, "
     "else /opt/ml/checkpoints when it exists, else <output-dir>/checkpoints)"},
    {"Checkpoints", "checkpoint-every-steps", &TrainConfig::checkpoint_every_steps, "N",
     "Also checkpoint every N optimiser steps; 0 = off (there is always one at each epoch end and on SIGTERM)"},
    {"Checkpoints", "checkpoint-every-seconds", &TrainConfig::checkpoint_every_seconds, "S",
     "Also checkpoint when S seconds have passed since the last one; 0 = off"},
    {"Checkpoints", "keep-checkpoints", &TrainConfig::keep_checkpoints, "K", "Keep the newest K checkpoints"},
    {"Checkpoints", "no-resume", &TrainConfig::no_resume, "BOOL", "Ignore existing checkpoints and start afresh"},
    {"Model", "num-classes", &TrainConfig::num_classes, "N", "Number of classes; 0 = inferred from the labels"},
    {"Model", "nonlinear-q", &TrainConfig::nonlinear_q, "BOOL", "Non-linear query projection"},
    {"Model", "passing-v", &TrainConfig::passing_v, "BOOL", "Learned value projection"},
    {"Model", "dropout-node", &TrainConfig::dropout_node, "P", "Dropout in v (only with --passing-v)"},
    {"Model", "value-relu", &TrainConfig::value_relu, "BOOL",
     "ReLU after v's Linear (only with --passing-v); false = the authors' 2020 value network (Dropout-Linear) that "
     "produced the paper's MUSK figures"},
    {"Model", "dropout-patch", &TrainConfig::dropout_patch, "P", "Fraction of instances dropped per bag in training"},
    {"Model", "average", &TrainConfig::average, "BOOL", "Score = (sigmoid(bag) + sigmoid(max instance)) / 2"},
    {"Optimisation", "epochs", &TrainConfig::epochs, "N", "Training epochs"},
    {"Optimisation", "lr", &TrainConfig::lr, "RATE", "Initial learning rate (Adam)"},
    {"Optimisation", "weight-decay", &TrainConfig::weight_decay, "W", "L2 weight decay"},
    {"Optimisation", "min-lr", &TrainConfig::min_lr, "RATE", "Cosine schedule floor"},
    {"Optimisation", "stop-epochs", &TrainConfig::stop_epochs, "N", "Early stop after this many epochs without improvement"},
    {"Optimisation", "accumulate", &TrainConfig::accumulate, "K",
     "Bags per rank per optimiser step (gradients averaged over the K bags of every rank); R ranks with K train "
     "the same bags in the same steps as 1 rank with R*K"},
    {"Splits", "val-fraction", &TrainConfig::val_fraction, "F",
     "Validation fraction split from --train (without --validation, --folds or --split-csv)"},
    {"Splits", "folds", &TrainConfig::folds, "K", "Stratified K-fold cross-validation; 0 = off"},
    {"Splits", "fold", &TrainConfig::fold, "I", "Run only fold I of --folds; -1 = all"},
    {"Splits", "standardize", &TrainConfig::standardize, "BOOL", "Z-score features with training-split statistics"},
    {"Runtime", "seed", &TrainConfig::seed, "N", "Random seed"},
    {"Runtime", "threads", &TrainConfig::threads, "N", "libtorch threads; 0 = all cores"},
    {"Runtime", "device", &TrainConfig::device, "auto|cpu|cuda|cuda:N", "Compute device"},
    {"Runtime", "log-level", &TrainConfig::log_level, "LEVEL", "trace|debug|info|warn|error|critical|off"},
    {"General", kConfigOption, &TrainConfig::config_file, "FILE", "JSON object of option -> value (lowest precedence)"},
};
// clang-format on

const OptionSpec* find_option(const std::string& name) {
  for (const OptionSpec& o : kOptions) {
    if (name == o.name) return &o;
  }
  return nullptr;
}

bool is_bool(const OptionSpec& o) {
  return std::holds_alternative<bool TrainConfig::*>(o.field);
}

std::string known_options() {
  std::string names;
  for (const OptionSpec& o : kOptions) names += (names.empty() ? "" : ", ") + std::string(o.name);
  return names + " ('_' may replace '-')";
}

// The SageMaker toolkit passes dict keys as written, so "nonlinear_q" means --nonlinear-q.
std::string canonical_name(std::string name) {
  std::replace(name.begin(), name.end(), '_', '-');
  return name;
}

// The training toolkit's own hyperparameters (sagemaker_program, sagemaker_region...), not ours.
bool is_toolkit_key(const std::string& canonical) {
  return canonical.rfind("sagemaker-", 0) == 0;
}

// The SDK's framework estimators JSON-encode every hyperparameter, so a string may arrive as "\"ram\"".
std::string decode_json_string(const std::string& text) {
  if (text.size() < 2 || text.front() != '"' || text.back() != '"') return text;
  const json j = json::parse(text, nullptr, /*allow_exceptions=*/false);
  return j.is_string() ? j.get<std::string>() : text;
}

// Numbers in messages and --help: shortest form that reads back the same for the values users type.
template <typename T>
std::string to_text(const T& value) {
  if constexpr (std::is_same_v<T, std::string>) {
    return value;
  } else if constexpr (std::is_same_v<T, bool>) {
    return value ? "true" : "false";
  } else {
    std::ostringstream os;
    os.precision(std::numeric_limits<double>::digits10);
    os << value;
    return os.str();
  }
}

std::string default_text(const TrainConfig& defaults, const OptionSpec& o) {
  return std::visit([&](auto field) { return to_text(defaults.*field); }, o.field);
}

template <typename T>
const char* expected_kind() {
  if constexpr (std::is_same_v<T, bool>) {
    return "true or false";
  } else if constexpr (std::is_floating_point_v<T>) {
    return "a number";
  } else if constexpr (std::is_unsigned_v<T>) {
    return "a non-negative integer";
  } else {
    return "an integer";
  }
}

// One option=value from one layer, as text; typed when applied so the error names the option.
struct Setting {
  const OptionSpec* option;
  std::string value;
};

struct Layer {
  std::string source;  // the file the settings came from; empty for the command line
  std::vector<Setting> settings;
};

// cxxopts' own value parser, so every layer reads values exactly like the command line.
template <typename T>
void parse_value(const std::string& text, T& value) {
  if constexpr (std::is_integral_v<T> && !std::is_same_v<T, bool> && sizeof(T) < sizeof(int64_t)) {
    // cxxopts misses some overflows of narrower types ("9999999999" reads as an int): read wide, then check.
    int64_t wide = 0;
    cxxopts::values::parse_value(text, wide);
    if (wide < std::numeric_limits<T>::min() || wide > std::numeric_limits<T>::max()) {
      throw cxxopts::exceptions::incorrect_argument_type(text);
    }
    value = static_cast<T>(wide);
  } else {
    cxxopts::values::parse_value(text, value);
  }
}

void apply(TrainConfig& cfg, const Layer& layer) {
  for (const Setting& s : layer.settings) {
    std::visit(
        [&](auto field) {
          using T = std::decay_t<decltype(cfg.*field)>;
          try {
            parse_value(s.value, cfg.*field);
          } catch (const cxxopts::exceptions::exception&) {
            throw Error(
                layer.source, "",
                "--" + std::string(s.option->name) + " expects " + expected_kind<T>() + " (got '" + s.value + "')");
          }
        },
        s.option->field);
  }
}

// hyperparameters.json (values are strings, possibly JSON-encoded) or a --config file (typed values).
Layer json_layer(const std::string& path, bool is_config_file) {
  json doc;
  try {
    doc = json::parse(io::read_file(path));
  } catch (const json::parse_error& e) {
    throw Error(path, "", std::string("not valid JSON: ") + e.what());
  }
  if (!doc.is_object()) throw Error(path, "", "expected a JSON object of option -> value");
  const std::string kind = is_config_file ? "option" : "hyperparameter";
  Layer layer{path, {}};
  std::set<std::string> seen;
  for (const auto& [key, value] : doc.items()) {
    const std::string name = canonical_name(key);
    if (is_toolkit_key(name)) continue;
    const OptionSpec* option = find_option(name);
    if (option == nullptr) throw Error(path, "", "unknown " + kind + " '" + key + "'; known: " + known_options());
    if (is_config_file && name == kConfigOption) throw Error(path, "", "a config file cannot name another (--config)");
    if (!seen.insert(name).second) throw Error(path, "", "--" + name + " is given twice ('-' and '_' spellings)");
    if (value.is_string()) {
      layer.settings.push_back({option, decode_json_string(value.get<std::string>())});
    } else if (value.is_boolean() || value.is_number()) {
      layer.settings.push_back({option, value.dump()});
    } else {
      throw Error(path, "", "--" + name + " expects a single value (got " + value.dump() + ")");
    }
  }
  return layer;
}

// "-1" and "-0.5" are values, not options.
bool is_option_token(const std::string& s) {
  return s.size() > 1 && s[0] == '-' && !std::isdigit(static_cast<unsigned char>(s[1])) && s[1] != '.';
}

// The toolkit's argument style made cxxopts': canonical names, its own --sagemaker_* arguments dropped, and a
// boolean's separate value ("--average True") attached, since cxxopts reads a flag's value only after '='.
std::vector<std::string> normalize_args(const std::vector<std::string>& args) {
  std::vector<std::string> out;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& arg = args[i];
    if (arg.size() <= 2 || arg.compare(0, 2, "--") != 0) {
      out.push_back(arg);
      continue;
    }
    const size_t eq = arg.find('=');
    const bool has_value = eq != std::string::npos;
    const std::string name = canonical_name(arg.substr(2, has_value ? eq - 2 : std::string::npos));
    const bool value_follows = !has_value && i + 1 < args.size() && !is_option_token(args[i + 1]);
    if (is_toolkit_key(name)) {
      if (value_follows) ++i;
      continue;
    }
    std::string token = "--" + name + (has_value ? arg.substr(eq) : "");
    const OptionSpec* option = find_option(name);
    if (option != nullptr && is_bool(*option) && value_follows) token += "=" + args[++i];
    out.push_back(std::move(token));
  }
  return out;
}

cxxopts::Options make_options(const TrainConfig& defaults, const std::string& root) {
  cxxopts::Options options(
      "dsmil_train",
      "Trains a DSMIL aggregator on per-slide patch features, in a SageMaker training job or locally.\n"
      "Settings, lowest precedence first: defaults (paths from SM_* variables, else " +
          root + "), --config FILE, " + root +
          "/input/config/hyperparameters.json, the command line.\n"
          "Names take '-' or '_'; values '--key value' or '--key=value'; booleans true/false/True/False/1/0.\n");
  // Reported by parse_args, which can name the option and list the known ones.
  options.allow_unrecognised_options();
  options.set_width(120);
  for (const OptionSpec& o : kOptions) {
    // Every value is read as text and typed by apply(), which names the option when that fails.
    auto value = cxxopts::value<std::string>();
    const std::string def = default_text(defaults, o);
    if (!def.empty()) value->default_value(def);
    if (is_bool(o)) value->implicit_value("true");
    options.add_option(o.group, cxxopts::Option(o.name, o.help, value, o.arg));
  }
  options.add_options("General")("dump-config", "Print the effective configuration as JSON and exit")(
      "h,help", "Print this help and exit");
  return options;
}

cxxopts::ParseResult parse_args(cxxopts::Options& options, const std::vector<std::string>& args) {
  const std::vector<std::string> normalized = normalize_args(args);
  std::vector<const char*> argv = {"dsmil_train"};
  for (const std::string& a : normalized) argv.push_back(a.c_str());
  cxxopts::ParseResult result;
  try {
    result = options.parse(static_cast<int>(argv.size()), argv.data());
  } catch (const cxxopts::exceptions::exception& e) {
    throw Error(e.what());
  }
  std::vector<std::string> extra = result.unmatched();
  // A bring-your-own container is started as `<entry point> train`.
  if (!extra.empty() && extra.front() == "train") extra.erase(extra.begin());
  for (const std::string& a : extra) {
    if (is_option_token(a)) throw Error("unknown option " + a.substr(0, a.find('=')) + "; known: " + known_options());
  }
  if (!extra.empty()) throw Error("unexpected argument '" + extra.front() + "'");
  return result;
}

Layer cli_layer(const cxxopts::ParseResult& result) {
  Layer layer;
  for (const cxxopts::KeyValue& kv : result.arguments()) {
    if (const OptionSpec* option = find_option(kv.key())) {
      layer.settings.push_back({option, decode_json_string(kv.value())});
    }
  }
  return layer;
}

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
  cxxopts::Options options = make_options(out.config, env.root);
  out.help_text = options.help(kGroups);
  const cxxopts::ParseResult result = parse_args(options, args);
  // --help must work whatever the config files hold, so it returns before reading them.
  out.help = result.count("help") > 0 && result["help"].as<bool>();
  if (out.help) return out;
  out.dump_config = result.count("dump-config") > 0 && result["dump-config"].as<bool>();

  const Layer cli = cli_layer(result);
  const std::string hp_path = (fs::path(env.root) / "input" / "config" / "hyperparameters.json").string();
  const Layer hyperparameters = file_exists(hp_path) ? json_layer(hp_path, false) : Layer{};

  // The config file is the lowest layer but is named in a higher one.
  std::string config_path;
  for (const Layer* layer : {&hyperparameters, &cli}) {
    for (const Setting& s : layer->settings) {
      if (s.option->name == std::string(kConfigOption)) config_path = s.value;
    }
  }
  TrainConfig& cfg = out.config;
  if (!config_path.empty()) apply(cfg, json_layer(config_path, true));
  apply(cfg, hyperparameters);
  apply(cfg, cli);

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
  const auto check = [](bool ok, const char* option, const std::string& rule, const std::string& got) {
    if (!ok) throw Error("--" + std::string(option) + " must be " + rule + " (got " + got + ")");
  };
  const auto one_of = [](const std::string& value, std::initializer_list<const char*> allowed) {
    return std::find(allowed.begin(), allowed.end(), value) != allowed.end();
  };
  const auto quoted = [](const std::string& s) { return "'" + s + "'"; };

  if (cfg.train_dir.empty()) throw Error("no training data: pass --train DIR or set SM_CHANNEL_TRAIN");
  check(!cfg.features_key.empty(), "features-key", "an HDF5 dataset name", "''");
  check(one_of(cfg.on_bad_slide, {"fail", "skip"}), "on-bad-slide", "fail or skip", quoted(cfg.on_bad_slide));
  check(one_of(cfg.cache, {"none", "ram", "ram32"}), "cache", "none, ram or ram32", quoted(cfg.cache));
  check(cfg.cache_budget >= 0, "cache-budget", ">= 0 (GB; 0 = no bound)", to_text(cfg.cache_budget));
  check(cfg.prefetch >= 1, "prefetch", ">= 1", to_text(cfg.prefetch));
  check(cfg.checkpoint_every_steps >= 0, "checkpoint-every-steps", ">= 0 (0 = off)",
        to_text(cfg.checkpoint_every_steps));
  check(cfg.checkpoint_every_seconds >= 0, "checkpoint-every-seconds", ">= 0 (0 = off)",
        to_text(cfg.checkpoint_every_seconds));
  check(cfg.keep_checkpoints >= 1, "keep-checkpoints", ">= 1", to_text(cfg.keep_checkpoints));
  check(cfg.num_classes >= 0, "num-classes", ">= 0", to_text(cfg.num_classes));
  check(cfg.dropout_node >= 0 && cfg.dropout_node < 1, "dropout-node", "in [0, 1)", to_text(cfg.dropout_node));
  if (!cfg.value_relu && !cfg.passing_v)
    throw Error("--value-relu false needs --passing-v (without it v is the identity)");
  check(cfg.dropout_patch >= 0 && cfg.dropout_patch < 1, "dropout-patch", "in [0, 1)", to_text(cfg.dropout_patch));
  check(cfg.epochs >= 1, "epochs", ">= 1", to_text(cfg.epochs));
  check(cfg.lr > 0, "lr", "> 0", to_text(cfg.lr));
  check(cfg.weight_decay >= 0, "weight-decay", ">= 0", to_text(cfg.weight_decay));
  check(cfg.min_lr >= 0, "min-lr", ">= 0", to_text(cfg.min_lr));
  check(cfg.stop_epochs >= 1, "stop-epochs", ">= 1", to_text(cfg.stop_epochs));
  check(cfg.accumulate >= 1, "accumulate", ">= 1", to_text(cfg.accumulate));
  check(cfg.val_fraction >= 0 && cfg.val_fraction < 1, "val-fraction", "in [0, 1)", to_text(cfg.val_fraction));
  check(cfg.folds == 0 || cfg.folds >= 2, "folds", "0 (off) or >= 2", to_text(cfg.folds));
  if (cfg.fold != -1 && cfg.folds == 0) throw Error("--fold " + to_text(cfg.fold) + " needs --folds K");
  check(cfg.fold >= -1 && cfg.fold < cfg.folds, "fold", "-1 (all) or in [0, " + to_text(cfg.folds) + ")",
        to_text(cfg.fold));
  check(cfg.threads >= 0, "threads", ">= 0 (0 = all cores)", to_text(cfg.threads));
  const std::string cuda_index = cfg.device.rfind("cuda:", 0) == 0 ? cfg.device.substr(5) : "";
  const bool cuda_n = !cuda_index.empty() && std::all_of(cuda_index.begin(), cuda_index.end(),
                                                         [](unsigned char c) { return std::isdigit(c); });
  check(one_of(cfg.device, {"auto", "cpu", "cuda"}) || cuda_n, "device", "auto, cpu, cuda or cuda:N",
        quoted(cfg.device));
  check(one_of(cfg.log_level, {"trace", "debug", "info", "warn", "error", "critical", "off"}), "log-level",
        "trace, debug, info, warn, error, critical or off", quoted(cfg.log_level));
}

json to_json(const TrainConfig& cfg) {
  json j = json::object();
  for (const OptionSpec& o : kOptions) {
    if (o.name == std::string(kConfigOption)) continue;
    std::visit([&](auto field) { j[o.name] = cfg.*field; }, o.field);
  }
  return j;
}

}  // namespace mil
