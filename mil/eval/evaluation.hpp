#pragma once
// Scoring bags with trained models: one model over a set (sharded over ranks), several models' votes, and
// the metrics' JSON form. Shared by dsmil_train (validation, test) and dsmil_eval.
#include <torch/torch.h>

#include <functional>
#include <limits>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "mil/data/bag_cache.hpp"
#include "mil/data/bag_index.hpp"
#include "mil/dist/communicator.hpp"
#include "mil/eval/metrics.hpp"
#include "mil/model/trained_model.hpp"

namespace mil {

// Scores of a model on a set of bags.
struct EvalResult {
  std::vector<std::string> slide_ids;
  std::vector<std::vector<double>> probs;                  // [bag][class]
  std::vector<std::vector<int>> targets;                   // [bag][class]; empty when the set has no labels
  double loss = std::numeric_limits<double>::quiet_NaN();  // mean DSMIL loss (labelled sets)
  EvalMetrics metrics;                                     // labelled sets only
};

// The loss target of a labelled bag: its C bits as a float tensor on `device`.
torch::Tensor target_tensor(const BagInfo& bag, const torch::Device& device);

// Forward passes over every bag of `index` (no gradients, eval mode), sharded: rank r scores bags r, r + W,
// ... and the scores are gathered, so every rank returns the same whole result in index order. With labels,
// metrics are computed with `thresholds`, or with thresholds fitted on this set when it is empty. With
// `cache`, the bags are served from (and kept in) that RAM cache.
EvalResult evaluate_bags(TrainedModel& model, const BagIndex& index, const std::string& features_key, int prefetch,
                         const torch::Device& device, const std::vector<double>& thresholds, Communicator& comm,
                         std::shared_ptr<BagCache> cache = nullptr);

// A bag's eval-mode forward pass over the model's weights. Empty: the model's DsmilNet; dsmil_train's
// validation passes its hand-written step's (TrainStep::forward), which gives the same outputs faster.
using BagForward = std::function<DsmilOutput(const torch::Tensor& x)>;

// evaluate_bags without the metrics (probabilities, targets and loss only), for a caller that checks the
// scores first.
EvalResult score_bags(TrainedModel& model, const BagIndex& index, const std::string& features_key, int prefetch,
                      const torch::Device& device, Communicator& comm, std::shared_ptr<BagCache> cache = nullptr,
                      const BagForward& forward = {});

// The scores of `set` rebuilt from probabilities and a loss kept elsewhere (a checkpoint): metrics are
// recomputed with thresholds fitted on the set, as during training. Empty probabilities: an empty result.
EvalResult restored_eval(const BagIndex& set, std::vector<std::vector<double>> probs, double loss);

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

}  // namespace mil
