#pragma once
// A job's checkpoints: where they go (the main rank's CheckpointStore), their numbering across restarts,
// the clock of --checkpoint-every-seconds, and the identity a checkpoint must match to be resumed.
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "mil/config/train_config.hpp"
#include "mil/dist/communicator.hpp"
#include "mil/train/checkpoint_state.hpp"
#include "mil/train/checkpoint_store.hpp"
#include "mil/util/clock.hpp"

namespace mil {

class CheckpointWriter {
 public:
  // The main rank opens the store and holds the directory's lock from here on: a second job on the same
  // directory is refused now, before any data is read.
  CheckpointWriter(const TrainConfig& cfg, Communicator& comm);

  // The slide digests the checkpoints keep: load() gives them the resumed checkpoint's (each slide is checked
  // when next read), write() stores what every rank has read. Call before load().
  void track(std::vector<std::shared_ptr<SlideDigests>> books) { books_ = std::move(books); }

  // The newest usable checkpoint of this job, read by the main rank and sent to every rank (the others may
  // not see its directory), decoded and checked against `identity`, which later checkpoints carry; nullopt
  // to start afresh (also with --no-resume). Every rank calls it. Throws mil::Error for another job's.
  std::optional<JobProgress> load(JobIdentity identity);

  // Commits the progress `build` returns (its sequence is set here) as the next checkpoint. Every rank calls
  // it at the same moment (they count checkpoints alike); only the main rank builds and writes. `moment` is
  // for the log.
  void write(const std::function<JobProgress()>& build, const std::string& moment);

  double seconds_since_last() const { return seconds_since(last_); }

 private:
  void expect_digests(const JobProgress& progress, const std::string& path);
  void share_digests();

  const TrainConfig& cfg_;
  Communicator& comm_;
  JobIdentity identity_;
  std::vector<std::shared_ptr<SlideDigests>> books_;
  std::optional<CheckpointStore> store_;  // main rank only
  int64_t sequence_ = 0;
  Clock::time_point last_ = Clock::now();
};

}  // namespace mil
