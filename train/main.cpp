// dsmil_train: parse the configuration (flags, config file, SageMaker's hyperparameters.json and SM_*
// variables), validate it, run the job. Errors end as one line on stderr, the SageMaker failure file and
// exit status 1.
#include <cstdio>
#include <string>
#include <vector>

#include "mil/train/train_config.hpp"
#include "mil/train/trainer.hpp"
#include "mil/util/cli.hpp"
#include "mil/util/threads.hpp"

int main(int argc, char** argv) {
  const std::vector<std::string> args(argv + 1, argv + argc);
  const mil::SageMakerEnvironment env = mil::SageMakerEnvironment::from_process();
  std::string failure_file = mil::environment_defaults(env).failure_file;
  try {
    const mil::ParsedTrainConfig parsed = mil::parse_train_config(args, env);
    const mil::TrainConfig& cfg = parsed.config;
    failure_file = cfg.failure_file;
    if (parsed.help) {
      std::fputs(parsed.help_text.c_str(), stdout);
      return 0;
    }
    if (parsed.dump_config) {
      std::puts(mil::to_json(cfg).dump(2).c_str());
      return 0;
    }
    mil::validate(cfg);
    mil::setup_logging(cfg.log_level);
    mil::set_torch_threads(cfg.threads);
    mil::LocalCommunicator comm;
    mil::run_training(cfg, comm);
    return 0;
  } catch (const std::exception& e) {
    return mil::report_failure("dsmil_train", e, failure_file);
  }
}
