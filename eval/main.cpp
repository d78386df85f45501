// dsmil_eval: score a channel of slides with trained models; see mil/eval/eval_job.hpp. Options are declared
// with dsmil_train's in mil/config/options.cpp.
#include <cstdio>

#include "mil/config/eval_config.hpp"
#include "mil/eval/eval_job.hpp"
#include "mil/util/logging.hpp"
#include "mil/util/threads.hpp"

int main(int argc, char** argv) {
  try {
    const mil::ParsedEvalConfig parsed = mil::parse_eval_config({argv + 1, argv + argc});
    if (parsed.help) {
      std::fputs(parsed.help_text.c_str(), stdout);
      return 0;
    }
    const mil::EvalConfig& cfg = parsed.config;
    mil::validate(cfg);
    mil::setup_logging(cfg.log_level);
    mil::set_torch_threads(cfg.threads);
    mil::run_evaluation(cfg);
    return 0;
  } catch (const std::exception& e) {
    return mil::report_failure("dsmil_eval", e, "");
  }
}
