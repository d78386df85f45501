#pragma once
// What a dsmil_train checkpoint holds, and its encoding as the files of one CheckpointStore entry:
//   state.json    format version, position, counters, best score, epoch records, the job's identity
//                 (training settings, data digest, bags per step and their layout) that a resumed job must
//                 match, and the digest of every slide's features read so far (checked as each is read again);
//   tensors.pt    every tensor (current and best weights, standardisation, finished folds' models),
//                 named in state.json's `tensors` list;
//   optimizer.pt  the Adam state (FusedAdam::save_state; format 1: torch::optim::Adam's serialisation).
// Numbers go through JSON as shortest round-trip decimals and tensors through torch::save, so a decoded
// checkpoint equals the encoded one bit for bit. Randomness needs no saved state: patch and node dropout
// are drawn from seeds of (seed, fold, epoch, slot) alone (see trainer.cpp).
#include <torch/torch.h>

#include <limits>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "mil/config/train_config.hpp"
#include "mil/data/bag_index.hpp"
#include "mil/data/slide_digests.hpp"
#include "mil/model/state_dict.hpp"
#include "mil/train/checkpoint_store.hpp"

namespace mil {

// 2: optimizer.pt holds FusedAdam's flat state. Version 1 (torch::optim::Adam's per-parameter state) is still
// read: TrainStep::load_state converts it exactly.
inline constexpr int kCheckpointFormatVersion = 2;
inline constexpr int kOldestReadableCheckpointVersion = 1;

// A model the job has finished training (one fold), with its validation scores at the kept epoch.
struct FinishedRun {
  int fold = 0;
  StateDict weights;
  torch::Tensor feature_mean, feature_std;  // undefined without --standardize
  std::vector<double> thresholds;
  nlohmann::json info = nlohmann::json::object();
  double val_loss = std::numeric_limits<double>::quiet_NaN();
  std::vector<std::vector<double>> val_probs;  // [bag][class]; empty without a validation set
};

// The model in training, between two optimiser steps.
struct RunProgress {
  int fold = 0;
  int epoch = 0;                  // 0-based epoch in progress
  int64_t step = 0;               // steps of `epoch` already taken (the next one to take)
  std::vector<double> bag_stats;  // (loss, instances) of each bag trained in `epoch` so far, in slot order
  StateDict weights;              // after `step` steps
  torch::Tensor feature_mean, feature_std;
  std::string optimizer;  // save_optimizer_state bytes
  double best_score = -std::numeric_limits<double>::infinity();
  int best_epoch = 0;
  int epochs_without_improvement = 0;
  StateDict best_weights;
  std::vector<double> best_thresholds;
  double best_val_loss = std::numeric_limits<double>::quiet_NaN();
  std::vector<std::vector<double>> best_val_probs;
};

// channel ("train", "validation") -> slide id -> digest of the slide's features as read (slide_digests.hpp).
using SlideDigestTable = std::map<std::string, DigestMap>;

// The whole job's progress: finished folds, the one in training (none between folds), the metric history.
struct JobProgress {
  int64_t sequence = 0;  // checkpoint number, increasing over the job's life (restarts included)
  std::vector<FinishedRun> finished;
  std::optional<RunProgress> current;
  nlohmann::json epoch_records = nlohmann::json::array();
  int total_epochs_planned = 0;
  int epochs_done = 0;
  // Every slide read so far, in state.json as hex strings; nullopt: written by a dsmil_train that kept none.
  std::optional<SlideDigestTable> slide_digests;
};

// What a checkpoint must match to be resumed: the same training, on the same data, with the same bags per
// step. The layout of those bags may differ: R ranks accumulating K bags train the same bags in the same steps
// as any other R' x K' = R x K (the sampler's plan depends on the slot count only, dropout on the slot), so a
// spot job restarted on fewer GPUs continues, up to float summation order.
struct JobIdentity {
  nlohmann::json settings;    // training_settings(cfg)
  std::string data_digest;    // data_digest(...)
  int64_t bags_per_step = 1;  // ranks x --accumulate
  int64_t ranks = 1;          // MPI ranks; bags_per_step / ranks is --accumulate
};

// The options that change what is trained (to_json(cfg) less paths, output places, threads, device,
// logging, prefetch and the checkpoint options themselves), less --accumulate: the layout is checked as
// JobIdentity's bags per step. The data is checked by its digest instead of its paths, so a job may find
// its channels somewhere else after a restart.
nlohmann::json training_settings(const TrainConfig& cfg);

// CRC32 over every named set's slide ids, instance counts, labels and feature dimension: a checkpoint of
// other slides, other labels or another split is refused.
std::string data_digest(const std::vector<std::pair<std::string, const BagIndex*>>& sets);

// state.json's form of the slide digests: {channel: {slide id: "16 hex digits"}}; from_json throws mil::Error.
nlohmann::json digest_table_to_json(const SlideDigestTable& table);
SlideDigestTable digest_table_from_json(const nlohmann::json& j);

std::map<std::string, std::string> encode_checkpoint(const JobProgress& progress, const JobIdentity& identity);

// Decodes `ckpt` after checking its format and that it was written by a job with `expected`'s identity.
// Throws mil::Error naming the checkpoint and what differs (each differing setting with both values).
JobProgress decode_checkpoint(const Checkpoint& ckpt, const JobIdentity& expected);

}  // namespace mil
