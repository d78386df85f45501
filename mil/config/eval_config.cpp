#include "mil/config/eval_config.hpp"

#include "mil/config/options.hpp"
#include "mil/util/error.hpp"

namespace mil {

ParsedEvalConfig parse_eval_config(const std::vector<std::string>& args) {
  ParsedEvalConfig out;
  const CommandLine cli = parse_command_line(
      args, out.config, "Scores slides with trained DSMIL models (several --model: majority vote).\n");
  out.help_text = cli.help_text;
  out.help = cli.help;
  if (!out.help) apply(out.config, cli.layer);
  return out;
}

void validate(const EvalConfig& cfg) {
  if (cfg.models.empty()) throw Error("", "--model", "at least one model is required");
  if (cfg.test_dir.empty()) throw Error("", "--test", "a channel directory of .h5 feature files is required");
  if (!cfg.slide_dir.empty() && cfg.plots_dir.empty()) throw Error("", "--slide-dir", "needs --plots");
  require_option(!cfg.features_key.empty(), "features-key", "an HDF5 dataset name", "''");
  validate_runtime_options(cfg.on_bad_slide, cfg.prefetch, cfg.threads, cfg.device, cfg.log_level);
}

}  // namespace mil
