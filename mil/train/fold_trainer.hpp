#pragma once
// Training one model (one fold): epochs of data-parallel steps, validation after each epoch, the best epoch
// kept, checkpoints at the moments the Scheduler names. Every rank of the job runs it together.
#include <torch/torch.h>

#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "mil/config/train_config.hpp"
#include "mil/data/bag_cache.hpp"
#include "mil/data/labels.hpp"
#include "mil/dist/communicator.hpp"
#include "mil/eval/evaluation.hpp"
#include "mil/model/trained_model.hpp"
#include "mil/train/checkpoint_state.hpp"
#include "mil/train/job_data.hpp"
#include "mil/train/reporter.hpp"

namespace mil {

// What a fold's training needs from its job.
struct FoldContext {
  const TrainConfig& cfg;
  Communicator& comm;
  torch::Device device;
  const ClassMap& classes;
  Reporter& reporter;
  std::shared_ptr<BagCache> cache;  // --cache: one RAM cache for every fold and the validation set; null = none
  // Seconds since the job's last checkpoint (for --checkpoint-every-seconds).
  std::function<double()> seconds_since_checkpoint;
  // Commits a checkpoint of the job with `current` as the fold in training; every rank calls it.
  std::function<void(const RunProgress& current, const std::string& moment)> checkpoint;
};

struct FoldOutcome {
  TrainedModel model;   // the best epoch's weights and thresholds, eval mode, on the job's device
  EvalResult best_val;  // its validation scores; empty without a validation set
};

// Trains one model on data.train and selects its best epoch on data.val, from scratch or from `resume`
// (the fold's state in a checkpoint). Throws Interrupted after the checkpoint of a stop request.
FoldOutcome train_fold(const FoldContext& ctx, const FoldData& data, std::optional<RunProgress> resume);

// The seed of one bag's training pass (patch and node dropout), from (seed, epoch, slot) alone, so that R
// ranks and one process accumulating R bags draw the same dropout for the bag of a slot.
uint64_t slot_seed(uint64_t seed, int epoch, int64_t slot);

}  // namespace mil
