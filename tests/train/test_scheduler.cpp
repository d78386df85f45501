// The training schedule's decisions: step signals summed over ranks, when checkpoints are due, when an epoch
// is kept and when a fold stops early.
#include <gtest/gtest.h>

#include <csignal>

#include "mil/train/scheduler.hpp"
#include "mil/util/stop_signal.hpp"

namespace mil {
namespace {

TEST(StepSignals, SurviveTheSumOverRanks) {
  StepSignals a, b;
  a.sigint = true;
  b.sigterm = true;
  b.checkpoint_due = true;
  std::vector<float> sum = a.to_flags();
  const std::vector<float> other = b.to_flags();
  for (size_t i = 0; i < sum.size(); ++i) sum[i] += other[i];  // what the all-reduce does
  const StepSignals agreed = StepSignals::from_flags(sum);
  EXPECT_TRUE(agreed.sigterm && agreed.sigint && agreed.checkpoint_due && agreed.stop());
  EXPECT_EQ(agreed.signal(), SIGTERM);  // SIGTERM wins: a spot reclaim is the stop that matters
  EXPECT_EQ(StepSignals::from_flags(a.to_flags()).signal(), SIGINT);
  EXPECT_FALSE(StepSignals::from_flags(StepSignals{}.to_flags()).stop());
  EXPECT_THROW(StepSignals::from_flags({1.0f}), std::logic_error);
}

TEST(Scheduler, CheckpointsWhenAskedDueOrOnTheStepSchedule) {
  TrainConfig cfg;
  cfg.checkpoint_every_steps = 5;
  cfg.checkpoint_every_seconds = 60;
  const Scheduler s(cfg);
  EXPECT_FALSE(s.checkpoint_after_step({}, 4));
  EXPECT_TRUE(s.checkpoint_after_step({}, 10));
  EXPECT_TRUE(s.checkpoint_after_step({false, false, true}, 3));
  EXPECT_TRUE(s.checkpoint_after_step({true, false, false}, 3));
  // Only the main rank's clock decides that a checkpoint is due.
  clear_stop_signal();
  EXPECT_TRUE(s.local_signals(true, 61).checkpoint_due);
  EXPECT_FALSE(s.local_signals(false, 61).checkpoint_due);
  EXPECT_FALSE(s.local_signals(true, 59).checkpoint_due);
  EXPECT_FALSE(s.local_signals(true, 61).stop());
}

TEST(Scheduler, KeepsStrictlyBetterEpochsAndStopsAfterStopEpochs) {
  TrainConfig cfg;
  cfg.stop_epochs = 2;
  cfg.epochs = 10;
  const Scheduler s(cfg);
  RunProgress p;
  p.best_score = 0.8;
  EXPECT_FALSE(s.improved(true, 0.8, p));  // equal is not better
  EXPECT_TRUE(s.improved(true, 0.81, p));
  EXPECT_TRUE(s.improved(false, 0.0, p));  // without validation every epoch is the latest best
  p.epochs_without_improvement = 2;
  EXPECT_FALSE(s.stop_early(p));
  p.epochs_without_improvement = 3;
  EXPECT_TRUE(s.stop_early(p));
  EXPECT_TRUE(s.checkpoint_at_epoch_end(9));
  EXPECT_FALSE(s.checkpoint_at_epoch_end(10));  // the fold's end checkpoints the last epoch
}

TEST(Scheduler, CosineFromLrToMinLr) {
  TrainConfig cfg;
  cfg.lr = 1e-3;
  cfg.min_lr = 1e-5;
  cfg.epochs = 4;
  const Scheduler s(cfg);
  EXPECT_DOUBLE_EQ(s.lr(0), 1e-3);
  EXPECT_NEAR(s.lr(2), (1e-3 + 1e-5) / 2, 1e-15);
  EXPECT_GT(s.lr(3), 1e-5);
}

}  // namespace
}  // namespace mil
