#pragma once
// A whole dsmil_train job: data, splits, one model per fold with validation and early stopping, checkpoints
// and resume, outputs. The rooms it is built from:
//   job_data       channels indexed and split into folds
//   fold_trainer   one model's epochs and steps (scheduler: when to checkpoint, keep, stop; lr)
//   checkpoint_writer / checkpoint_state / model_state   checkpoints written, read and converted
//   reporter       progress lines, [metrics] lines, TensorBoard, epoch records
//   outputs        models, metrics.json, predictions.csv, config.json
#include "mil/config/train_config.hpp"
#include "mil/dist/communicator.hpp"

namespace mil {

// Runs the job described by `cfg` (already validated) on every rank of `comm`: one model, data-parallel
// (see the README on mpirun). Only the main rank writes files and prints metric lines.
void run_training(const TrainConfig& cfg, Communicator& comm);

}  // namespace mil
