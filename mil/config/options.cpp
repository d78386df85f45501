#include "mil/config/options.hpp"

#include <algorithm>
#include <cctype>
#include <cxxopts.hpp>
#include <limits>
#include <optional>
#include <set>
#include <sstream>
#include <type_traits>
#include <variant>

#include "mil/io/files.hpp"
#include "mil/util/error.hpp"

namespace mil {

// A field of Config that an option sets; monostate: the option is not one of that tool's.
template <typename Config>
using Field = std::variant<std::monostate, std::string Config::*, bool Config::*, int Config::*, int64_t Config::*,
                           uint64_t Config::*, double Config::*, std::vector<std::string> Config::*,
                           std::optional<bool> Config::*>;

struct OptionSpec {
  const char* group;  // --help section
  const char* name;   // canonical spelling, with '-'
  const char* arg;    // value placeholder in --help
  const char* help;   // --help text; cxxopts appends the default
  bool trains;        // changes what is trained: a resumed job must have the same value
  Field<TrainConfig> train;
  Field<EvalConfig> eval;
};

namespace {

using nlohmann::json;
using T = TrainConfig;
using E = EvalConfig;
constexpr std::monostate kNone{};
constexpr bool kTrains = true;
constexpr bool kRuns = false;  // where and how fast, not what

const char kConfigOption[] = "config";

// clang-format off
const OptionSpec kOptions[] = {
    // dsmil_train
    {"Channels", "train", "DIR", "Training channel: per-slide .h5 feature files [SM_CHANNEL_TRAIN]", kRuns, &T::train_dir, kNone},
    {"Channels", "validation", "DIR",
     "Validation channel [SM_CHANNEL_VALIDATION]; without it the validation set is split from --train", kRuns, &T::validation_dir, kNone},
    {"Channels", "test", "DIR", "Test channel [SM_CHANNEL_TEST]", kRuns, &T::test_dir, kNone},
    {"Channels", "labels", "CSV", "Slide labels of --train (default: <train>/labels.csv)", kRuns, &T::labels, kNone},
    {"Channels", "validation-labels", "CSV", "Slide labels of --validation (default: <validation>/labels.csv)", kRuns,
     &T::validation_labels, kNone},
    {"Channels", "test-labels", "CSV", "Slide labels of --test (default: <test>/labels.csv)", kRuns, &T::test_labels, kNone},
    {"Channels", "split-csv", "CSV", "CLAM splits_k.csv with train/val/test columns", kRuns, &T::split_csv, kNone},
    {"Channels", "negative-label", "LABEL", "Label value meaning \"no positive class\"", kTrains, &T::negative_label, kNone},
    {"Channels", "cache", "auto|none|ram|ram32|gpu",
     "Keep features in memory, training and validation bags, across folds (ram: float16, ram32: float32; auto: "
     "float32 within half the free memory, the rest read from disk; gpu: float16 on the training GPU, no copy per "
     "bag, needs --cache-budget)", kTrains,
     &T::cache, kNone},
    {"Channels", "cache-budget", "GB",
     "Most memory the --cache may hold (GPU memory with --cache gpu); bags beyond it are read from disk each time "
     "(same values); 0 = no bound (auto: half the free memory)", kRuns,
     &T::cache_budget, kNone},
    {"Outputs", "model-dir", "DIR", "Where the model is saved [SM_MODEL_DIR]", kRuns, &T::model_dir, kNone},
    {"Outputs", "output-dir", "DIR", "Metrics and predictions [SM_OUTPUT_DATA_DIR]", kRuns, &T::output_dir, kNone},
    {"Outputs", "failure-file", "FILE", "Where the reason for a failure is written", kRuns, &T::failure_file, kNone},
    {"Outputs", "tensorboard-dir", "DIR|none",
     "TensorBoard event files, written at each epoch end (default: <root>/output/tensorboard when the SageMaker "
     "root exists, where TensorBoardOutputConfig uploads from, else <output-dir>/tensorboard); none = off", kRuns,
     &T::tensorboard_dir, kNone},
    {"Checkpoints", "checkpoint-dir", "DIR",
     "Where checkpoints are written and resumed from (default: LocalPath of the job's checkpointconfig.json, "
     "else /opt/ml/checkpoints when it exists, else <output-dir>/checkpoints)", kRuns, &T::checkpoint_dir, kNone},
    {"Checkpoints", "checkpoint-every-steps", "N",
     "Also checkpoint every N optimiser steps; 0 = off (there is always one at each epoch end and on SIGTERM)", kRuns,
     &T::checkpoint_every_steps, kNone},
    {"Checkpoints", "checkpoint-every-seconds", "S", "Also checkpoint when S seconds have passed since the last one; 0 = off",
     kRuns, &T::checkpoint_every_seconds, kNone},
    {"Checkpoints", "keep-checkpoints", "K", "Keep the newest K checkpoints", kRuns, &T::keep_checkpoints, kNone},
    {"Checkpoints", "no-resume", "BOOL", "Ignore existing checkpoints and start afresh", kRuns, &T::no_resume, kNone},
    {"Model", "num-classes", "N", "Number of classes; 0 = inferred from the labels", kTrains, &T::num_classes, kNone},
    {"Model", "nonlinear-q", "BOOL", "Non-linear query projection", kTrains, &T::nonlinear_q, kNone},
    {"Model", "passing-v", "BOOL", "Learned value projection", kTrains, &T::passing_v, kNone},
    {"Model", "dropout-node", "P", "Dropout in v (only with --passing-v)", kTrains, &T::dropout_node, kNone},
    {"Model", "value-relu", "BOOL",
     "ReLU after v's Linear (only with --passing-v); false = the authors' 2020 value network (Dropout-Linear) that "
     "produced the paper's MUSK figures", kTrains, &T::value_relu, kNone},
    {"Model", "dropout-patch", "P", "Fraction of instances dropped per bag in training", kTrains, &T::dropout_patch, kNone},
    {"Model", "average", "BOOL", "Score = (sigmoid(bag) + sigmoid(max instance)) / 2", kTrains, &T::average, kNone},
    {"Optimisation", "epochs", "N", "Training epochs", kTrains, &T::epochs, kNone},
    {"Optimisation", "lr", "RATE", "Initial learning rate (Adam)", kTrains, &T::lr, kNone},
    {"Optimisation", "weight-decay", "W", "L2 weight decay", kTrains, &T::weight_decay, kNone},
    {"Optimisation", "min-lr", "RATE", "Cosine schedule floor", kTrains, &T::min_lr, kNone},
    {"Optimisation", "stop-epochs", "N", "Early stop after this many epochs without improvement", kTrains, &T::stop_epochs, kNone},
    {"Optimisation", "accumulate", "K",
     "Bags per rank per optimiser step (gradients averaged over the K bags of every rank); R ranks with K train "
     "the same bags in the same steps as 1 rank with R*K", kTrains, &T::accumulate, kNone},
    {"Optimisation", "bags-per-step", "K",
     "Bags packed into one forward/backward (CPU): the update of --accumulate K, K times fewer passes; with "
     "--accumulate A and R ranks a step trains R*A*K bags, each rank A packs of K", kTrains, &T::bags_per_step, kNone},
    {"Splits", "val-fraction", "F", "Validation fraction split from --train (without --validation, --folds or --split-csv)",
     kTrains, &T::val_fraction, kNone},
    {"Splits", "folds", "K", "Stratified K-fold cross-validation; 0 = off", kTrains, &T::folds, kNone},
    {"Splits", "fold", "I", "Run only fold I of --folds; -1 = all", kTrains, &T::fold, kNone},
    {"Splits", "standardize", "BOOL", "Z-score features with training-split statistics", kTrains, &T::standardize, kNone},
    {"Runtime", "seed", "N", "Random seed", kTrains, &T::seed, kNone},
    {"Runtime", "precision", "fp32|bf16",
     "Arithmetic of the step's large products: fp32 (the reference), or bf16 operands with float32 accumulation and "
     "float32 master weights, loss and Adam (opt-in; CPUs with avx512_bf16 or amx_bf16, GPUs of compute capability "
     ">= 8.0; features kept in bfloat16)",
     kTrains, &T::precision, kNone},
    {"General", kConfigOption, "FILE", "JSON object of option -> value (lowest precedence)", kRuns, &T::config_file, kNone},
    // dsmil_eval
    {"Inputs", "model", "PATH", "Model dir, model.pt or reference .pth; repeat it to let several models vote", kRuns,
     kNone, &E::models},
    {"Inputs", "test", "DIR", "Channel directory of per-slide .h5 feature files to score", kRuns, kNone, &E::test_dir},
    {"Inputs", "labels", "CSV", "Slide labels, slide_id,label (default: <test>/labels.csv when present)", kRuns, kNone,
     &E::labels},
    {"Inputs", "value-relu", "BOOL",
     "For a reference .pth with a value network (b_classifier.v.1.*): false = weights of the authors' 2020 code, whose "
     "v has no ReLU (the keys cannot tell; default: today's v with ReLU). model.pt records it", kRuns, kNone,
     &E::pth_value_relu},
    {"Outputs", "out", "DIR", "Output directory: predictions.csv, metrics.json (with labels), attention/", kRuns, kNone,
     &E::out_dir},
    {"Outputs", "attention", "BOOL", "Write per-slide attention and instance scores (HDF5, with coords)", kRuns, kNone,
     &E::attention},
    {"Outputs", "plots", "DIR", "PNG figures: roc.png (with labels), heatmaps/<slide>.png (slides with coords)", kRuns,
     kNone, &E::plots_dir},
    {"Outputs", "slide-dir", "DIR", "Whole-slide images <slide_id>.<svs|tif|ndpi|...> drawn under the heatmaps (OpenSlide)",
     kRuns, kNone, &E::slide_dir},
    // both
    {"Channels", "features-key", "NAME", "HDF5 dataset holding the [N, D] features", kTrains, &T::features_key,
     &E::features_key},
    {"Channels", "on-bad-slide", "fail|skip", "What to do with an unreadable slide", kTrains, &T::on_bad_slide,
     &E::on_bad_slide},
    {"Channels", "prefetch", "N", "Bags read ahead in the background", kRuns, &T::prefetch, &E::prefetch},
    {"Channels", "max-bag-bytes", "BYTES",
     "Largest features dataset a slide may declare (N x D x dtype size); a larger one is a bad slide", kRuns,
     &T::max_bag_bytes, kNone},
    {"Runtime", "threads", "N", "libtorch threads; 0 = auto (the process's share of the cores, one for small bags)", kRuns, &T::threads, &E::threads},
    {"Runtime", "device", "auto|cpu|cuda|cuda:N", "Compute device", kRuns, &T::device, &E::device},
    {"Runtime", "comm", "auto|mpi|gloo|nccl",
     "Collectives between mpirun ranks: MPI, or libtorch c10d's Gloo (CPU) or NCCL (GPU); auto = nccl on a GPU when "
     "the build has it, else mpi", kRuns, &T::comm, kNone},
    {"Runtime", "collective-timeout", "S",
     "MPI ranks: end the job when a collective has waited S seconds for a rank (a hung rank); 0 = wait forever",
     kRuns, &T::collective_timeout, kNone},
    {"Runtime", "log-level", "LEVEL", "trace|debug|info|warn|error|critical|off", kRuns, &T::log_level, &E::log_level},
};
// clang-format on

template <typename Config>
const Field<Config>& field_of(const OptionSpec& o) {
  if constexpr (std::is_same_v<Config, TrainConfig>) {
    return o.train;
  } else {
    return o.eval;
  }
}

template <typename Config>
bool belongs_to(const OptionSpec& o) {
  return !std::holds_alternative<std::monostate>(field_of<Config>(o));
}

template <typename Config>
const OptionSpec* find_option(const std::string& name) {
  for (const OptionSpec& o : kOptions) {
    if (name == o.name && belongs_to<Config>(o)) return &o;
  }
  return nullptr;
}

template <typename Config>
bool is_bool(const OptionSpec& o) {
  const Field<Config>& f = field_of<Config>(o);
  return std::holds_alternative<bool Config::*>(f) || std::holds_alternative<std::optional<bool> Config::*>(f);
}

template <typename Config>
std::string known_options() {
  std::string names;
  for (const OptionSpec& o : kOptions) {
    if (belongs_to<Config>(o)) names += (names.empty() ? "" : ", ") + std::string(o.name);
  }
  return names + " ('_' may replace '-')";
}

// The SageMaker toolkit passes dict keys as written, so "nonlinear_q" means --nonlinear-q.
std::string canonical_name(std::string name) {
  std::replace(name.begin(), name.end(), '_', '-');
  return name;
}

// Keys SageMaker reserves, not ours: the training toolkit's (sagemaker_program, sagemaker_region...) and
// those a hyperparameter tuning job adds (_tuning_objective_metric...).
bool is_reserved_key(const std::string& canonical) {
  return canonical.rfind("sagemaker-", 0) == 0 || (!canonical.empty() && canonical[0] == '-');
}

// The SDK's framework estimators JSON-encode every hyperparameter, so a string may arrive as "\"ram\"".
std::string decode_json_string(const std::string& text) {
  if (text.size() < 2 || text.front() != '"' || text.back() != '"') return text;
  const json j = json::parse(text, nullptr, /*allow_exceptions=*/false);
  return j.is_string() ? j.get<std::string>() : text;
}

template <typename V>
std::string to_text(const V& value) {
  if constexpr (std::is_same_v<V, std::string>) {
    return value;
  } else if constexpr (std::is_same_v<V, bool>) {
    return value ? "true" : "false";
  } else if constexpr (std::is_same_v<V, std::vector<std::string>> || std::is_same_v<V, std::optional<bool>>) {
    return "";  // no default shown
  } else {
    std::ostringstream os;
    os.precision(std::numeric_limits<double>::digits10);
    os << value;
    return os.str();
  }
}

template <typename Config>
std::string default_text(const Config& defaults, const OptionSpec& o) {
  return std::visit(
      [&](auto field) -> std::string {
        if constexpr (std::is_same_v<decltype(field), std::monostate>) {
          return "";
        } else {
          return to_text(defaults.*field);
        }
      },
      field_of<Config>(o));
}

template <typename V>
const char* expected_kind() {
  if constexpr (std::is_same_v<V, bool> || std::is_same_v<V, std::optional<bool>>) {
    return "true or false";
  } else if constexpr (std::is_floating_point_v<V>) {
    return "a number";
  } else if constexpr (std::is_unsigned_v<V>) {
    return "a non-negative integer";
  } else {
    return "an integer";
  }
}

// cxxopts' own value parser, so every layer reads values exactly like the command line.
template <typename V>
void parse_value(const std::string& text, V& value) {
  if constexpr (std::is_same_v<V, std::vector<std::string>>) {
    value.push_back(text);  // repeatable: each occurrence adds one
  } else if constexpr (std::is_same_v<V, std::optional<bool>>) {
    bool b = false;
    cxxopts::values::parse_value(text, b);
    value = b;
  } else if constexpr (std::is_integral_v<V> && !std::is_same_v<V, bool> && sizeof(V) < sizeof(int64_t)) {
    // cxxopts misses some overflows of narrower types ("9999999999" reads as an int): read wide, then check.
    int64_t wide = 0;
    cxxopts::values::parse_value(text, wide);
    if (wide < std::numeric_limits<V>::min() || wide > std::numeric_limits<V>::max()) {
      throw cxxopts::exceptions::incorrect_argument_type(text);
    }
    value = static_cast<V>(wide);
  } else {
    cxxopts::values::parse_value(text, value);
  }
}

// "-1" and "-0.5" are values, not options.
bool is_option_token(const std::string& s) {
  return s.size() > 1 && s[0] == '-' && !std::isdigit(static_cast<unsigned char>(s[1])) && s[1] != '.';
}

// The toolkit's argument style made cxxopts': canonical names, reserved arguments dropped, and a boolean's
// separate value ("--average True") attached, since cxxopts reads a flag's value only after '='.
template <typename Config>
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
    if (is_reserved_key(name)) {
      if (value_follows) ++i;
      continue;
    }
    std::string token = "--" + name + (has_value ? arg.substr(eq) : "");
    const OptionSpec* option = find_option<Config>(name);
    if (option != nullptr && is_bool<Config>(*option) && value_follows) token += "=" + args[++i];
    out.push_back(std::move(token));
  }
  return out;
}

template <typename Config>
constexpr const char* program_name() {
  return std::is_same_v<Config, TrainConfig> ? "dsmil_train" : "dsmil_eval";
}

template <typename Config>
std::vector<std::string> help_groups() {
  std::vector<std::string> groups;
  for (const OptionSpec& o : kOptions) {
    if (belongs_to<Config>(o) && std::find(groups.begin(), groups.end(), o.group) == groups.end()) {
      groups.push_back(o.group);
    }
  }
  if (std::find(groups.begin(), groups.end(), "General") == groups.end()) groups.push_back("General");
  return groups;
}

template <typename Config>
cxxopts::Options make_options(const Config& defaults, const std::string& description) {
  cxxopts::Options options(program_name<Config>(), description);
  // Reported by parse_args, which can name the option and list the known ones.
  options.allow_unrecognised_options();
  options.set_width(120);
  for (const OptionSpec& o : kOptions) {
    if (!belongs_to<Config>(o)) continue;
    // Every value is read as text and typed by apply(), which names the option when that fails.
    auto value = cxxopts::value<std::string>();
    const std::string def = default_text(defaults, o);
    if (!def.empty()) value->default_value(def);
    if (is_bool<Config>(o)) value->implicit_value("true");
    options.add_option(o.group, cxxopts::Option(o.name, o.help, value, o.arg));
  }
  if constexpr (std::is_same_v<Config, TrainConfig>) {
    options.add_options("General")("dump-config", "Print the effective configuration as JSON and exit");
  }
  options.add_options("General")("h,help", "Print this help and exit");
  return options;
}

template <typename Config>
cxxopts::ParseResult parse_args(cxxopts::Options& options, const std::vector<std::string>& args) {
  const std::vector<std::string> normalized = normalize_args<Config>(args);
  std::vector<const char*> argv = {program_name<Config>()};
  for (const std::string& a : normalized) argv.push_back(a.c_str());
  cxxopts::ParseResult result;
  try {
    result = options.parse(static_cast<int>(argv.size()), argv.data());
  } catch (const cxxopts::exceptions::exception& e) {
    throw Error(e.what());
  }
  std::vector<std::string> extra = result.unmatched();
  // A bring-your-own container is started as `<entry point> train`.
  if (std::is_same_v<Config, TrainConfig> && !extra.empty() && extra.front() == "train") extra.erase(extra.begin());
  for (const std::string& a : extra) {
    if (is_option_token(a)) {
      throw Error("unknown option " + a.substr(0, a.find('=')) + "; known: " + known_options<Config>());
    }
  }
  if (!extra.empty()) throw Error("unexpected argument '" + extra.front() + "'");
  return result;
}

}  // namespace

template <typename Config>
CommandLine parse_command_line(const std::vector<std::string>& args, const Config& defaults,
                               const std::string& description) {
  cxxopts::Options options = make_options(defaults, description);
  CommandLine out;
  out.help_text = options.help(help_groups<Config>());
  const cxxopts::ParseResult result = parse_args<Config>(options, args);
  out.help = result.count("help") > 0 && result["help"].as<bool>();
  out.dump_config = result.count("dump-config") > 0 && result["dump-config"].as<bool>();
  for (const cxxopts::KeyValue& kv : result.arguments()) {
    if (const OptionSpec* option = find_option<Config>(kv.key())) {
      out.layer.settings.push_back({option, decode_json_string(kv.value())});
    }
  }
  return out;
}

Layer json_layer(const std::string& path, bool is_config_file) {
  json doc;
  try {
    doc = json::parse(io::read_file(path));
  } catch (const json::exception& e) {  // parse_error, or out_of_range for a number like 1e999 (fuzz_hyperparameters)
    throw Error(path, "", std::string("not valid JSON: ") + e.what());
  }
  if (!doc.is_object()) throw Error(path, "", "expected a JSON object of option -> value");
  const std::string kind = is_config_file ? "option" : "hyperparameter";
  Layer layer{path, {}};
  std::set<std::string> seen;
  for (const auto& [key, value] : doc.items()) {
    const std::string name = canonical_name(key);
    if (is_reserved_key(name)) continue;
    const OptionSpec* option = find_option<TrainConfig>(name);
    if (option == nullptr) {
      throw Error(path, "", "unknown " + kind + " '" + key + "'; known: " + known_options<TrainConfig>());
    }
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

template <typename Config>
void apply(Config& cfg, const Layer& layer) {
  for (const Setting& s : layer.settings) {
    std::visit(
        [&](auto field) {
          if constexpr (!std::is_same_v<decltype(field), std::monostate>) {
            using V = std::decay_t<decltype(cfg.*field)>;
            try {
              parse_value(s.value, cfg.*field);
            } catch (const cxxopts::exceptions::exception&) {
              throw Error(
                  layer.source, "",
                  "--" + std::string(s.option->name) + " expects " + expected_kind<V>() + " (got '" + s.value + "')");
            }
          }
        },
        field_of<Config>(*s.option));
  }
}

std::string value_of(const Layer& layer, const std::string& name) {
  std::string value;
  for (const Setting& s : layer.settings) {
    if (name == s.option->name) value = s.value;
  }
  return value;
}

nlohmann::json options_to_json(const TrainConfig& cfg) {
  json j = json::object();
  for (const OptionSpec& o : kOptions) {
    if (o.name == std::string(kConfigOption)) continue;
    std::visit(
        [&](auto field) {
          if constexpr (!std::is_same_v<decltype(field), std::monostate>) {
            const auto& value = cfg.*field;
            if constexpr (std::is_same_v<std::decay_t<decltype(value)>, std::optional<bool>>) {
              j[o.name] = value ? json(*value) : json(nullptr);
            } else {
              j[o.name] = value;
            }
          }
        },
        o.train);
  }
  return j;
}

nlohmann::json training_options_to_json(const TrainConfig& cfg) {
  json j = options_to_json(cfg);
  for (const OptionSpec& o : kOptions) {
    if (belongs_to<TrainConfig>(o) && !o.trains) j.erase(o.name);
  }
  return j;
}

std::string option_text(double value) {
  return to_text(value);
}

void require_option(bool ok, const char* option, const std::string& rule, const std::string& got) {
  if (!ok) throw Error("--" + std::string(option) + " must be " + rule + " (got " + got + ")");
}

void validate_runtime_options(const std::string& on_bad_slide, int prefetch, int threads, const std::string& device,
                              const std::string& log_level) {
  const auto one_of = [](const std::string& value, std::initializer_list<const char*> allowed) {
    return std::find(allowed.begin(), allowed.end(), value) != allowed.end();
  };
  const auto quoted = [](const std::string& s) { return "'" + s + "'"; };
  require_option(one_of(on_bad_slide, {"fail", "skip"}), "on-bad-slide", "fail or skip", quoted(on_bad_slide));
  require_option(prefetch >= 1, "prefetch", ">= 1", option_text(prefetch));
  require_option(threads >= 0, "threads", ">= 0 (0 = auto)", option_text(threads));
  const std::string cuda_index = device.rfind("cuda:", 0) == 0 ? device.substr(5) : "";
  const bool cuda_n = !cuda_index.empty() && std::all_of(cuda_index.begin(), cuda_index.end(),
                                                         [](unsigned char c) { return std::isdigit(c); });
  require_option(one_of(device, {"auto", "cpu", "cuda"}) || cuda_n, "device", "auto, cpu, cuda or cuda:N",
                 quoted(device));
  require_option(one_of(log_level, {"trace", "debug", "info", "warn", "error", "critical", "off"}), "log-level",
                 "trace, debug, info, warn, error, critical or off", quoted(log_level));
}

template CommandLine parse_command_line<TrainConfig>(const std::vector<std::string>&, const TrainConfig&,
                                                     const std::string&);
template CommandLine parse_command_line<EvalConfig>(const std::vector<std::string>&, const EvalConfig&,
                                                    const std::string&);
template void apply<TrainConfig>(TrainConfig&, const Layer&);
template void apply<EvalConfig>(EvalConfig&, const Layer&);

}  // namespace mil
