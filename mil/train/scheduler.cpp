#include "mil/train/scheduler.hpp"

#include <csignal>

#include "mil/util/check.hpp"
#include "mil/util/stop_signal.hpp"

namespace mil {

int StepSignals::signal() const {
  return sigterm ? SIGTERM : sigint ? SIGINT : 0;
}

std::vector<float> StepSignals::to_flags() const {
  return {sigterm ? 1.0f : 0.0f, sigint ? 1.0f : 0.0f, checkpoint_due ? 1.0f : 0.0f};
}

StepSignals StepSignals::from_flags(const std::vector<float>& flags) {
  MIL_CHECK(flags.size() == 3, "StepSignals: 3 flags expected");
  return {flags[0] > 0, flags[1] > 0, flags[2] > 0};
}

void stop_if_asked(Communicator& comm) {
  const int64_t sig = comm.allreduce_max(stop_signal());
  if (sig != 0) throw Interrupted(static_cast<int>(sig));
}

Scheduler::Scheduler(const TrainConfig& cfg) : cfg_(cfg) {
  optimizer_.lr = cfg.lr;
  optimizer_.weight_decay = cfg.weight_decay;
  optimizer_.min_lr = cfg.min_lr;
}

double Scheduler::lr(int epoch) const {
  return cosine_lr(optimizer_, epoch, cfg_.epochs);
}

StepSignals Scheduler::local_signals(bool is_main, double seconds_since_checkpoint) const {
  const int sig = stop_signal();
  StepSignals s;
  s.sigterm = sig == SIGTERM;
  s.sigint = sig == SIGINT;
  s.checkpoint_due =
      is_main && cfg_.checkpoint_every_seconds > 0 && seconds_since_checkpoint >= cfg_.checkpoint_every_seconds;
  return s;
}

bool Scheduler::checkpoint_after_step(const StepSignals& agreed, int64_t steps_done) const {
  return agreed.stop() || agreed.checkpoint_due ||
         (cfg_.checkpoint_every_steps > 0 && steps_done % cfg_.checkpoint_every_steps == 0);
}

bool Scheduler::improved(bool has_validation, double score, const RunProgress& p) const {
  return !has_validation || score > p.best_score;
}

bool Scheduler::stop_early(const RunProgress& p) const {
  return p.epochs_without_improvement > cfg_.stop_epochs;
}

bool Scheduler::checkpoint_at_epoch_end(int epochs_done) const {
  return epochs_done < cfg_.epochs;
}

}  // namespace mil
