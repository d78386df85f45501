// dsmil_train: parse the configuration (flags, config file, SageMaker's hyperparameters.json and SM_*
// variables), validate it, run the job, as one process or as every rank of an mpirun job. Errors end as
// one line on stderr (naming the rank on multi-rank jobs), the SageMaker failure file and exit status 1.
// SIGTERM/SIGINT end the job at its next step with a checkpoint and exit status 128 + the signal number.
#include <spdlog/spdlog.h>

#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "mil/config/job_environment.hpp"
#include "mil/config/train_config.hpp"
#include "mil/dist/communicator.hpp"
#include "mil/train/trainer.hpp"
#include "mil/util/logging.hpp"
#include "mil/util/stop_signal.hpp"
#include "mil/util/threads.hpp"

int main(int argc, char** argv) {
  mil::install_stop_handlers();
  const std::vector<std::string> args(argv + 1, argv + argc);
  const mil::SageMakerEnvironment env = mil::SageMakerEnvironment::from_process();
  std::string failure_file = mil::environment_defaults(env).failure_file;
  std::unique_ptr<mil::Communicator> comm;
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
    mil::validate(cfg);  // before MPI: every rank has the same arguments and fails the same way
    comm = mil::make_communicator({cfg.comm, cfg.device, cfg.collective_timeout});
    mil::setup_logging(cfg.log_level, comm->rank(), comm->world_size());
    mil::check_job_environment(env, comm->world_size());
    mil::set_torch_threads(cfg.threads, comm->local_size());
    mil::run_training(cfg, *comm);
    return 0;
  } catch (const mil::Interrupted& e) {
    // Not a failure: every rank stopped at the same step, after the checkpoint was written.
    spdlog::warn("[ckpt] {}: stopped after writing a checkpoint; the same command resumes (exit status {})", e.what(),
                 e.exit_code());
    return e.exit_code();
  } catch (const std::exception& e) {
    if (comm == nullptr || comm->world_size() == 1) return mil::report_failure("dsmil_train", e, failure_file);
    // The other ranks may be waiting in a collective for this one: end them all.
    comm->abort(mil::report_failure("dsmil_train", e, failure_file, "rank " + std::to_string(comm->rank())));
  }
}
