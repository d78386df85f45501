#include "mil/train/checkpoint_writer.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <sstream>

namespace mil {

CheckpointWriter::CheckpointWriter(const TrainConfig& cfg, Communicator& comm) : cfg_(cfg), comm_(comm) {
  if (comm_.is_main()) store_.emplace(cfg_.checkpoint_dir, cfg_.keep_checkpoints, /*exclusive=*/true);
}

std::optional<JobProgress> CheckpointWriter::load(JobIdentity identity) {
  identity_ = std::move(identity);
  std::optional<Checkpoint> ckpt;
  if (comm_.is_main()) {
    const size_t existing = store_->list().size();
    if (!cfg_.no_resume) ckpt = store_->load_latest();
    if (!ckpt && existing > 0) {
      spdlog::warn("[ckpt] {} ({}): starting afresh; the {} checkpoint(s) there will be superseded by this run's",
                   cfg_.checkpoint_dir, cfg_.no_resume ? "--no-resume" : "none is usable", existing);
    }
    // New checkpoints are numbered after every existing one, so they are the newest.
    sequence_ = store_->newest_step().value_or(0);
  }
  if (comm_.allreduce_max(ckpt ? 1 : 0) == 0) return std::nullopt;
  std::string names;
  if (ckpt) {
    for (const auto& [name, bytes] : ckpt->files) names += name + "\n";
  } else {
    ckpt.emplace();
  }
  comm_.broadcast_bytes(ckpt->path, 0);
  comm_.broadcast_bytes(names, 0);
  std::istringstream lines(names);
  for (std::string name; std::getline(lines, name);) comm_.broadcast_bytes(ckpt->files[name], 0);
  JobProgress progress = decode_checkpoint(*ckpt, identity_);
  sequence_ = std::max(sequence_, progress.sequence);
  return progress;
}

void CheckpointWriter::write(const std::function<JobProgress()>& build, const std::string& moment) {
  ++sequence_;
  last_ = Clock::now();
  if (!comm_.is_main()) return;
  JobProgress progress = build();
  progress.sequence = sequence_;
  const Clock::time_point t0 = Clock::now();
  const std::string path = store_->write(sequence_, encode_checkpoint(progress, identity_));
  spdlog::info("[ckpt] wrote {} ({}) in {:.2f}s", path, moment, seconds_since(t0));
}

}  // namespace mil
