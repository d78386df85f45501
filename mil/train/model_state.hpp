#pragma once
// The one place where trained models and the checkpoint structs (checkpoint_state.hpp) are converted into
// each other, and where a model of the job's architecture is made.
#include <torch/torch.h>

#include <string>

#include "mil/config/train_config.hpp"
#include "mil/data/labels.hpp"
#include "mil/eval/evaluation.hpp"
#include "mil/model/trained_model.hpp"
#include "mil/train/checkpoint_state.hpp"

namespace mil {

// A model of the job's architecture on the CPU, its weights as constructed, thresholds 0.5.
TrainedModel untrained_model(const TrainConfig& cfg, const ClassMap& classes, int64_t feature_dim);

// A finished fold as a checkpoint keeps it (weights, standardisation, thresholds, validation scores).
FinishedRun finished_run(TrainedModel& model, const EvalResult& val, int fold);
// Back into a model on `device`, eval mode. `source` names the checkpoint in errors.
TrainedModel restore_finished(const FinishedRun& run, TrainedModel model, const torch::Device& device,
                              const std::string& source);

// The fold in training into `p`: current weights, optimiser state, standardisation and the best epoch's
// validation scores (the counters and best weights are kept in `p` as training goes).
void capture_run(RunProgress& p, TrainedModel& model, std::string optimizer_state, const EvalResult& best_val);
// Drops what capture_run added, so that `p` holds counters only between checkpoints.
void release_run(RunProgress& p);

}  // namespace mil
