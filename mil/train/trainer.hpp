#pragma once
// A whole dsmil_train job: data, splits, the training loop with validation and early stopping, outputs.
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "mil/data/bag_cache.hpp"
#include "mil/data/bag_index.hpp"
#include "mil/dist/communicator.hpp"
#include "mil/train/metrics.hpp"
#include "mil/train/train_config.hpp"
#include "mil/train/trained_model.hpp"

namespace mil {

// One line of metrics.json's `epochs` array.
struct EpochRecord {
  int fold = 0;
  int epoch = 0;  // 1-based, as people count them
  double train_loss = 0;
  double val_loss = std::numeric_limits<double>::quiet_NaN();
  std::vector<double> val_auc;  // per class
  double val_accuracy = std::numeric_limits<double>::quiet_NaN();
  double lr = 0;
  double seconds = 0;
  double instances_per_second = 0;
  nlohmann::json to_json() const;
};

// Scores of a model on a set of bags.
struct EvalResult {
  std::vector<std::string> slide_ids;
  std::vector<std::vector<double>> probs;                  // [bag][class]
  std::vector<std::vector<int>> targets;                   // [bag][class]; empty when the set has no labels
  double loss = std::numeric_limits<double>::quiet_NaN();  // mean DSMIL loss (labelled sets)
  EvalMetrics metrics;                                     // labelled sets only
};

// Forward passes over every bag of `index` (no gradients, eval mode), sharded: rank r scores bags r, r + W,
// ... and the scores are gathered, so every rank returns the same whole result in index order. With labels,
// metrics are computed with `thresholds`, or with thresholds fitted on this set when it is empty. With
// `cache`, the bags are served from (and kept in) that RAM cache.
EvalResult evaluate_bags(TrainedModel& model, const BagIndex& index, const std::string& features_key, int prefetch,
                         const torch::Device& device, const std::vector<double>& thresholds, Communicator& comm,
                         std::shared_ptr<BagCache> cache = nullptr);

// Several models' scores of the same bags combined: mean probabilities, a per-(bag, class) majority vote of
// each model's prediction at its own thresholds, and, for labelled bags, metrics of the vote (accuracy,
// balanced accuracy, hamming loss of the voted labels; AUC of the mean probabilities).
struct VoteResult {
  EvalResult mean;                      // slide ids, targets, mean probabilities
  std::vector<std::vector<int>> voted;  // [bag][class]
  EvalMetrics metrics;                  // labelled bags only
};
VoteResult combine_votes(const std::vector<EvalResult>& per_model, const std::vector<TrainedModel>& models);

// metrics.json form of evaluation metrics: per-class AUC (null where undefined), mean AUC, accuracy,
// balanced accuracy (binary), hamming loss, thresholds.
nlohmann::json metrics_to_json(const EvalMetrics& m);

// The device named by --device ("auto": CUDA when available, the rank's local GPU).
torch::Device resolve_device(const std::string& spec, int local_rank);

// Runs the job described by `cfg` (already validated) on every rank of `comm`: one model, data-parallel
// (see the README on mpirun). Only the main rank writes files and prints metric lines.
void run_training(const TrainConfig& cfg, Communicator& comm);

}  // namespace mil
