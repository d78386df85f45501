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
  expect_digests(progress, ckpt->path);
  return progress;
}

void CheckpointWriter::expect_digests(const JobProgress& progress, const std::string& path) {
  if (!progress.slide_digests) {
    if (comm_.is_main() && !books_.empty()) {
      spdlog::warn(
          "[ckpt] {} was written by a dsmil_train that kept no slide digests: feature values changed since "
          "then cannot be noticed in this resume (the checkpoints written from now on keep them)",
          path);
    }
    return;
  }
  for (const std::shared_ptr<SlideDigests>& book : books_) {
    const auto it = progress.slide_digests->find(book->channel());
    book->expect(it == progress.slide_digests->end() ? DigestMap{} : it->second, path);
  }
}

// Every rank's reads since the last checkpoint go to every rank (one broadcast per rank, new slides only),
// so the main rank's checkpoint has the digest of every slide the job has read.
void CheckpointWriter::share_digests() {
  if (comm_.world_size() == 1 || books_.empty()) return;
  SlideDigestTable fresh;
  for (const std::shared_ptr<SlideDigests>& book : books_) fresh[book->channel()] = book->take_fresh();
  const std::string mine = digest_table_to_json(fresh).dump();
  for (int q = 0; q < comm_.world_size(); ++q) {
    std::string bytes = q == comm_.rank() ? mine : std::string();
    comm_.broadcast_bytes(bytes, q);
    if (q == comm_.rank()) continue;
    const SlideDigestTable theirs = digest_table_from_json(nlohmann::json::parse(bytes));
    for (const std::shared_ptr<SlideDigests>& book : books_) {
      const auto it = theirs.find(book->channel());
      if (it != theirs.end()) book->merge(it->second);
    }
  }
}

void CheckpointWriter::write(const std::function<JobProgress()>& build, const std::string& moment) {
  ++sequence_;
  last_ = Clock::now();
  share_digests();
  if (!comm_.is_main()) return;
  JobProgress progress = build();
  progress.sequence = sequence_;
  progress.slide_digests.emplace();
  for (const std::shared_ptr<SlideDigests>& book : books_) (*progress.slide_digests)[book->channel()] = book->all();
  const Clock::time_point t0 = Clock::now();
  const std::string path = store_->write(sequence_, encode_checkpoint(progress, identity_));
  spdlog::info("[ckpt] wrote {} ({}) in {:.2f}s", path, moment, seconds_since(t0));
}

}  // namespace mil
