// dsmil_eval: score a channel of slides with trained models; see mil/train/eval_job.hpp.
#include <cstdio>
#include <cxxopts.hpp>

#include "mil/train/eval_job.hpp"
#include "mil/util/cli.hpp"
#include "mil/util/error.hpp"
#include "mil/util/threads.hpp"

int main(int argc, char** argv) {
  mil::EvalConfig cfg;
  std::string value_relu;  // text, so that "--value-relu false" reads its value (a cxxopts bool would not)
  cxxopts::Options options("dsmil_eval", "Score slides with trained DSMIL models (several --model: majority vote)");
  options.add_options()("model", "model dir, model.pt or reference .pth (repeatable)",
                        cxxopts::value<std::vector<std::string>>(cfg.models))(
      "test", "channel directory of per-slide .h5 feature files", cxxopts::value<std::string>(cfg.test_dir))(
      "labels", "CSV slide_id,label (default: <test>/labels.csv when present)",
      cxxopts::value<std::string>(cfg.labels))("out", "output directory",
                                               cxxopts::value<std::string>(cfg.out_dir)->default_value(cfg.out_dir))(
      "attention", "write per-slide attention and instance scores (HDF5, with coords)",
      cxxopts::value<bool>(cfg.attention)->default_value("false"))(
      "plots", "write PNG figures to DIR: roc.png (with labels), heatmaps/<slide>.png (slides with coords)",
      cxxopts::value<std::string>(cfg.plots_dir))(
      "slide-dir", "whole-slide images <slide_id>.<svs|tif|ndpi|...> drawn under the heatmaps (OpenSlide)",
      cxxopts::value<std::string>(cfg.slide_dir))(
      "value-relu",
      "for a reference .pth with a value network (b_classifier.v.1.*): false = weights of the authors' 2020 code, "
      "whose v has no ReLU (the keys cannot tell; default: today's v with ReLU). model.pt records it",
      cxxopts::value<std::string>(value_relu))(
      "features-key", "HDF5 dataset holding [N, D] features",
      cxxopts::value<std::string>(cfg.features_key)->default_value(cfg.features_key))(
      "on-bad-slide", "fail|skip", cxxopts::value<std::string>(cfg.on_bad_slide)->default_value(cfg.on_bad_slide))(
      "prefetch", "bags read ahead", cxxopts::value<int>(cfg.prefetch)->default_value("4"))(
      "threads", "libtorch threads (0 = auto: the process's share of the cores, 1 on a share of <= 2)",
      cxxopts::value<int>(cfg.threads)->default_value("0"))(
      "device", "auto|cpu|cuda|cuda:N", cxxopts::value<std::string>(cfg.device)->default_value(cfg.device))(
      "log-level", "trace|debug|info|warn|error", cxxopts::value<std::string>(cfg.log_level)->default_value("info"))(
      "h,help", "print help");
  try {
    const auto result = options.parse(argc, argv);
    if (result.count("help")) {
      std::fputs(options.help().c_str(), stdout);
      return 0;
    }
    if (cfg.on_bad_slide != "fail" && cfg.on_bad_slide != "skip") {
      throw mil::Error("", "--on-bad-slide", "must be fail or skip (got '" + cfg.on_bad_slide + "')");
    }
    if (!result.unmatched().empty()) {
      throw mil::Error("unexpected argument '" + result.unmatched().front() + "'");
    }
    if (result.count("value-relu")) {
      // cxxopts' own reading of booleans, as dsmil_train's options use.
      bool b = true;
      try {
        cxxopts::values::parse_value(value_relu, b);
      } catch (const cxxopts::exceptions::exception&) {
        throw mil::Error("", "--value-relu", "must be true or false (got '" + value_relu + "')");
      }
      cfg.pth_value_relu = b;
    }
    mil::setup_logging(cfg.log_level);
    mil::set_torch_threads(cfg.threads);
    mil::run_evaluation(cfg);
    return 0;
  } catch (const std::exception& e) {
    return mil::report_failure("dsmil_eval", e, "");
  }
}
