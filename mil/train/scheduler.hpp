#pragma once
// When a fold's training does what: the learning rate of each epoch, when to checkpoint, when to keep an
// epoch as the best and when to stop early. Decisions depend only on values every rank holds (the agreed
// step signals, gathered validation scores), so every rank takes the same ones.
#include <cstdint>
#include <vector>

#include "mil/config/train_config.hpp"
#include "mil/dist/communicator.hpp"
#include "mil/train/checkpoint_state.hpp"
#include "mil/train/optimizer.hpp"

namespace mil {

// What ranks tell each other at every step, summed over ranks inside the gradient all-reduce (see
// average_gradients): a stop request (SIGTERM or SIGINT on any rank) and whether rank 0's clock says a
// checkpoint is due.
struct StepSignals {
  bool sigterm = false;
  bool sigint = false;
  bool checkpoint_due = false;

  bool stop() const { return sigterm || sigint; }
  int signal() const;  // SIGTERM before SIGINT; 0 when none

  // As the flags average_gradients sums (0/1 per rank), and back from the sums.
  std::vector<float> to_flags() const;
  static StepSignals from_flags(const std::vector<float>& flags);
};

// Ends the job, every rank together, when any rank has been asked to stop (a collective: every rank calls
// it at the same point, after a checkpoint): throws Interrupted.
void stop_if_asked(Communicator& comm);

class Scheduler {
 public:
  explicit Scheduler(const TrainConfig& cfg);

  const OptimizerConfig& optimizer() const { return optimizer_; }
  // Cosine annealing from --lr to --min-lr over --epochs.
  double lr(int epoch) const;

  // This rank's signals before a step's all-reduce: its stop request, and on the main rank whether
  // --checkpoint-every-seconds have passed since the last checkpoint.
  StepSignals local_signals(bool is_main, double seconds_since_checkpoint) const;
  // After step number `steps_done` (1-based) of an epoch, with the signals every rank agreed on.
  bool checkpoint_after_step(const StepSignals& agreed, int64_t steps_done) const;

  // Whether the epoch just validated is the best so far (without validation every epoch is), and the
  // bookkeeping of epochs without improvement.
  bool improved(bool has_validation, double score, const RunProgress& p) const;
  // After the bookkeeping of an epoch: no improvement for more than --stop-epochs epochs.
  bool stop_early(const RunProgress& p) const;
  // An epoch end gets its own checkpoint, except the last, which the fold's end checkpoints.
  bool checkpoint_at_epoch_end(int epochs_done) const;

 private:
  const TrainConfig& cfg_;
  OptimizerConfig optimizer_;
};

}  // namespace mil
