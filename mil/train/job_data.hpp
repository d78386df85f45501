#pragma once
// A training job's data: the channels indexed (headers only) and split into one (train, validation) pair
// per model to train, plus the test set.
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "mil/config/train_config.hpp"
#include "mil/data/bag_index.hpp"
#include "mil/data/labels.hpp"
#include "mil/data/slide_digests.hpp"

namespace mil {

// The bags one model trains on and selects its best epoch on.
struct FoldData {
  int fold = 0;  // 0 unless --folds
  BagIndex train;
  BagIndex val;  // empty: no validation set (every epoch counts as the best so far)
};

struct JobData {
  ClassMap classes;  // from the training labels
  int64_t feature_dim = 0;
  std::vector<FoldData> folds;  // in training order
  BagIndex test;                // empty without --test (or a split CSV's test column)
};

// Indexes --train (and --validation, --test) and splits it: by the validation channel, a CLAM split CSV,
// stratified k-fold (--folds, --fold) or a stratified holdout (--val-fraction). Throws mil::Error for bad
// input (unreadable labels, bad slides, a D that differs between channels, an empty training split).
JobData load_job_data(const TrainConfig& cfg);

// The named sets whose contents a checkpoint must match (see data_digest).
std::vector<std::pair<std::string, const BagIndex*>> digest_sets(const JobData& data);

// The slide digests of the training and validation channels (not the test set's: it trains nothing), which
// the checkpoints keep and a resumed job checks.
std::vector<std::shared_ptr<SlideDigests>> digest_books(const JobData& data);

}  // namespace mil
