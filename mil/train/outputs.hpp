#pragma once
// What a finished training job leaves behind (main rank): the best model (and each fold's with --folds) in
// the model dir; metrics.json (epoch records and the summary), predictions.csv and config.json in the
// output dir; the summary's [metrics] lines on standard output.
#include <vector>

#include "mil/config/train_config.hpp"
#include "mil/eval/evaluation.hpp"
#include "mil/model/trained_model.hpp"
#include "mil/train/job_data.hpp"
#include "mil/train/reporter.hpp"

namespace mil {

// The models a job has trained so far, in training order, with the fold and validation scores of each.
struct FoldResults {
  std::vector<int> folds;
  std::vector<TrainedModel> models;
  std::vector<EvalResult> val;  // the kept epoch's scores; empty without a validation set
};

// Writes every output of the job. `test` holds each model's scores of the test set (empty without one):
// they are combined by majority vote.
void write_outputs(const TrainConfig& cfg, const JobData& data, FoldResults& results,
                   const std::vector<EvalResult>& test, const Reporter& reporter);

}  // namespace mil
