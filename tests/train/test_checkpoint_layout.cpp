// Resuming with another layout of the same bags per step: R ranks x --accumulate K train the same bags in
// the same steps as any R' x K' = R x K, so a checkpoint of one resumes as the other (a spot job restarted on
// fewer GPUs); another number of bags per step is refused, naming both layouts. The exactness of such a
// resume (the model within 1e-5 of the uninterrupted run's) is tests/e2e/resume_layout.sh's, under mpirun.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "mil/data/sampler.hpp"
#include "mil/train/checkpoint_state.hpp"
#include "mil/util/error.hpp"
#include "tests/test_util.hpp"

namespace mil {
namespace {

using nlohmann::json;

// The identity of a job of `ranks` x `accumulate`.
JobIdentity identity(int64_t ranks, int accumulate) {
  TrainConfig cfg;
  cfg.accumulate = accumulate;
  return {training_settings(cfg), "digest", ranks * accumulate, ranks};
}

Checkpoint checkpoint_of(const JobIdentity& writer) {
  return {1, "ckpt-1", encode_checkpoint(JobProgress{}, writer)};
}

TEST(ResumeLayout, TheSameBagsPerStepInAnotherLayoutResume) {
  EXPECT_NO_THROW(decode_checkpoint(checkpoint_of(identity(2, 1)), identity(1, 2)));
  EXPECT_NO_THROW(decode_checkpoint(checkpoint_of(identity(1, 2)), identity(2, 1)));
  EXPECT_NO_THROW(decode_checkpoint(checkpoint_of(identity(4, 1)), identity(2, 2)));
  EXPECT_NO_THROW(decode_checkpoint(checkpoint_of(identity(4, 1)), identity(1, 4)));
  EXPECT_NO_THROW(decode_checkpoint(checkpoint_of(identity(3, 2)), identity(3, 2)));
}

TEST(ResumeLayout, OtherBagsPerStepAreRefusedNamingBothLayouts) {
  EXPECT_TRUE(test::throws_error_naming(
      [] { decode_checkpoint(checkpoint_of(identity(2, 1)), identity(1, 1)); },
      {"ckpt-1",
       "layout (ranks x --accumulate = bags per step): 2 rank(s) x --accumulate 1 = 2 bag(s) per step in "
       "the checkpoint, now 1 rank(s) x --accumulate 1 = 1 bag(s) per step",
       "(with 1 rank(s): --accumulate 2)", "--no-resume"}));
  // 4 x 1 on 3 ranks: no --accumulate makes 4 bags per step, so no hint.
  try {
    decode_checkpoint(checkpoint_of(identity(4, 1)), identity(3, 1));
    ADD_FAILURE() << "4 bags per step resumed with 3";
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("4 rank(s) x --accumulate 1 = 4 bag(s) per step in the checkpoint, now 3 rank(s) x "
                       "--accumulate 1 = 3 bag(s) per step"),
              std::string::npos)
        << msg;
    EXPECT_EQ(msg.find("(with 3 rank(s)"), std::string::npos) << msg;
    EXPECT_EQ(msg.find("accumulate: "), std::string::npos) << "the layout is not a setting: " << msg;
  }
}

// Checkpoints written before the layout check kept --accumulate among the settings and no rank count: the
// layout is recovered from them.
TEST(ResumeLayout, ACheckpointOfTheFormerIdentityResumesInAnotherLayout) {
  JobIdentity older = identity(1, 2);
  older.settings["accumulate"] = 2;
  Checkpoint ckpt = checkpoint_of(older);
  json state = json::parse(ckpt.files.at("state.json"));
  state.erase("ranks");
  ckpt.files["state.json"] = state.dump(1);
  EXPECT_NO_THROW(decode_checkpoint(ckpt, identity(2, 1)));
  EXPECT_NO_THROW(decode_checkpoint(ckpt, identity(1, 2)));
  EXPECT_TRUE(test::throws_error_naming([&] { decode_checkpoint(ckpt, identity(2, 2)); },
                                        {"1 rank(s) x --accumulate 2 = 2 bag(s) per step in the checkpoint, now 2 "
                                         "rank(s) x --accumulate 2 = 4 bag(s) per step"}));
}

// Why a layout change is exact: the plan of every epoch depends on the number of slots per step only, and
// rank r of R accumulating K takes slots [r K, r K + K) of each step.
TEST(ResumeLayout, EveryLayoutOfTheSameSlotsTrainsTheSameBagsInEachStep) {
  std::vector<int64_t> sizes;
  for (int i = 0; i < 37; ++i) sizes.push_back(1 + (i * 7919) % 300);
  SamplerOptions opts;
  opts.world_size = 4;  // slots per step
  const EpochSampler sampler(sizes, opts);
  for (int64_t epoch : {0, 3}) {
    const std::vector<std::vector<int64_t>> plan = sampler.epoch_plan(epoch);
    for (int ranks : {1, 2, 4}) {
      const int k = 4 / ranks;
      for (int r = 0; r < ranks; ++r) {
        const std::vector<int64_t> seq = sampler.slot_sequence(epoch, r * k, k);
        for (size_t s = 0; s < plan.size(); ++s) {
          for (int j = 0; j < k; ++j) EXPECT_EQ(seq[s * k + j], plan[s][r * k + j]);
        }
      }
    }
  }
}

}  // namespace
}  // namespace mil
