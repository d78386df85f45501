#pragma once
// The options of both binaries, declared once (options.cpp): each row names the dsmil_train and/or
// dsmil_eval field it sets, its --help group and text, and whether it changes what is trained (the
// settings a resumed job must match). The machinery here reads them from every layer (command line,
// JSON config file, SageMaker's hyperparameters.json) exactly alike, as cxxopts reads a command line.
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "mil/config/eval_config.hpp"
#include "mil/config/train_config.hpp"

namespace mil {

struct OptionSpec;  // one row of the table

// One option=value of one layer, as text; typed when applied, so that an error names the option.
struct Setting {
  const OptionSpec* option;
  std::string value;
};

struct Layer {
  std::string source;  // the file the settings came from; empty for the command line
  std::vector<Setting> settings;
};

struct CommandLine {
  Layer layer;               // the options given
  bool help = false;         // --help
  bool dump_config = false;  // --dump-config (dsmil_train)
  std::string help_text;     // --help output, with `defaults` shown
};

// Parses `args` (without argv[0]) against `Config`'s options; names take '-' or '_', booleans a separate
// value ("--average True", as SageMaker's toolkit passes them), --sagemaker_* and other keys SageMaker
// reserves are dropped. A leading "train" (how SageMaker starts a container) is dropped for dsmil_train;
// any other stray argument or unknown option is a mil::Error listing the known options.
template <typename Config>
CommandLine parse_command_line(const std::vector<std::string>& args, const Config& defaults,
                               const std::string& description);

// A JSON object of option -> value: hyperparameters.json (values as strings, possibly JSON-encoded) or a
// --config file (typed values; it cannot name another). dsmil_train's options.
Layer json_layer(const std::string& path, bool is_config_file);

// Sets `cfg`'s fields from the layer's settings, in order (repeatable options append).
template <typename Config>
void apply(Config& cfg, const Layer& layer);

// The value given for option `name` in `layer`, or "" (the last one when given more than once).
std::string value_of(const Layer& layer, const std::string& name);

// Every dsmil_train option with its value, keyed by option name, leaving out "config" itself.
nlohmann::json options_to_json(const TrainConfig& cfg);
// As options_to_json, only the options that change what is trained (not paths, outputs, threads, device,
// logging, prefetch or the checkpoint options).
nlohmann::json training_options_to_json(const TrainConfig& cfg);

// Numbers in messages and --help: the shortest form that reads back the same.
std::string option_text(double value);

// Throws mil::Error "--<option> must be <rule> (got <got>)" unless `ok`.
void require_option(bool ok, const char* option, const std::string& rule, const std::string& got);

// The checks of the options both binaries have: --on-bad-slide, --prefetch, --threads, --device, --log-level.
void validate_runtime_options(const std::string& on_bad_slide, int prefetch, int threads, const std::string& device,
                              const std::string& log_level);

}  // namespace mil
