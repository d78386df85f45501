#pragma once
// dsmil_eval's configuration: one struct, filled from the command line (options declared with dsmil_train's
// in mil/config/options.cpp).
#include <optional>
#include <string>
#include <vector>

namespace mil {

struct EvalConfig {
  std::vector<std::string> models;        // --model: model dir, model.pt or reference .pth; repeat to vote
  std::string test_dir;                   // --test: channel dir of per-slide .h5 files
  std::string labels;                     // --labels: CSV slide_id,label; default <test>/labels.csv if present
  std::string out_dir = "eval";           // --out
  bool attention = false;                 // --attention: per-slide HDF5 with attention and instance scores
  std::string plots_dir;                  // --plots: roc.png (labelled sets) and heatmaps/<slide>.png; "" = none
  std::string slide_dir;                  // --slide-dir: <slide_id>.<svs|tif|...> drawn under the heatmaps
  std::optional<bool> pth_value_relu;     // --value-relu: a .pth's value network ends in a ReLU (keys can't tell)
  std::string features_key = "features";  // --features-key
  std::string on_bad_slide = "fail";      // --on-bad-slide: fail|skip
  int prefetch = 4;                       // --prefetch
  int threads = 0;                        // --threads: 0 = auto (set_torch_threads)
  std::string device = "auto";            // --device
  std::string log_level = "info";         // --log-level
};

struct ParsedEvalConfig {
  EvalConfig config;
  bool help = false;      // --help: print help_text and exit
  std::string help_text;  // --help output
};

// `args` excludes argv[0]. Throws mil::Error on unknown options, malformed values and stray arguments.
ParsedEvalConfig parse_eval_config(const std::vector<std::string>& args);

// Throws mil::Error naming the first offending option.
void validate(const EvalConfig& cfg);

}  // namespace mil
