#include "mil/train/job_data.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>

#include "mil/data/slide_digests.hpp"
#include "mil/data/splits.hpp"
#include "mil/util/clock.hpp"
#include "mil/util/error.hpp"

namespace mil {
namespace {

BagIndex subset(const BagIndex& index, const std::vector<int64_t>& positions) {
  BagIndex out;
  out.channel = index.channel;
  out.feature_dim = index.feature_dim;
  out.digests = index.digests;
  for (int64_t i : positions) out.bags.push_back(index.bags[static_cast<size_t>(i)]);
  return out;
}

std::vector<int> strata_of(const BagIndex& index, const ClassMap& classes) {
  std::vector<int> strata;
  for (const auto& b : index.bags) strata.push_back(classes.stratum(b.target));
  return strata;
}

// A channel other than --train, with the training channel's classes and D.
BagIndex index_extra(const std::string& dir, const std::string& labels_path, const ClassMap& classes,
                     const IndexOptions& options, int64_t feature_dim) {
  const LabelTable labels = read_label_csv(labels_path);
  BagIndex idx = index_channel(dir, &labels, &classes, options);
  if (idx.feature_dim != feature_dim) {
    throw Error(
        dir, "",
        "D = " + std::to_string(idx.feature_dim) + ", but the training channel has D = " + std::to_string(feature_dim));
  }
  return idx;
}

// One (train, validation) pair per model to train; a split CSV may also name the test set.
std::vector<FoldData> split_folds(const TrainConfig& cfg, const BagIndex& train_all, const BagIndex& val_channel,
                                  const ClassMap& classes, BagIndex& test) {
  std::vector<FoldData> folds;
  const std::vector<int> strata = strata_of(train_all, classes);
  if (!cfg.validation_dir.empty()) {
    folds.push_back({0, train_all, val_channel});
  } else if (!cfg.split_csv.empty()) {
    std::vector<std::string> ids;
    for (const auto& b : train_all.bags) ids.push_back(b.slide_id);
    const Split s = read_clam_split_csv(cfg.split_csv, ids);
    folds.push_back({0, subset(train_all, s.train), subset(train_all, s.val)});
    if (!s.test.empty() && test.bags.empty()) test = subset(train_all, s.test);
  } else if (cfg.folds > 0) {
    for (int f = 0; f < cfg.folds; ++f) {
      if (cfg.fold >= 0 && f != cfg.fold) continue;
      const Split s = stratified_kfold(strata, cfg.folds, f, cfg.seed);
      folds.push_back({f, subset(train_all, s.train), subset(train_all, s.val)});
    }
  } else {
    const Split s = stratified_holdout(strata, cfg.val_fraction, cfg.seed);
    folds.push_back({0, subset(train_all, s.train), subset(train_all, s.val)});
  }
  for (const FoldData& f : folds) {
    if (f.train.bags.empty()) throw Error(cfg.train_dir, "", "the training split is empty");
  }
  return folds;
}

}  // namespace

JobData load_job_data(const TrainConfig& cfg) {
  JobData data;
  const LabelTable train_labels = read_label_csv(cfg.labels);
  data.classes = ClassMap::infer(train_labels.labels, cfg.num_classes, cfg.negative_label, cfg.labels);
  IndexOptions index_opts;
  index_opts.features_key = cfg.features_key;
  index_opts.skip_bad_slides = cfg.on_bad_slide == "skip";
  index_opts.max_bag_bytes = cfg.max_bag_bytes;
  const Clock::time_point t0 = Clock::now();
  BagIndex train_all = index_channel(cfg.train_dir, &train_labels, &data.classes, index_opts);
  train_all.digests = std::make_shared<SlideDigests>("train");
  data.feature_dim = train_all.feature_dim;
  spdlog::info("[data] {}: {} slides, {} instances, D = {}, {} class(es) ({}), indexed in {:.1f}s", cfg.train_dir,
               train_all.bags.size(), train_all.total_instances(), train_all.feature_dim, data.classes.num_classes(),
               fmt::join(data.classes.class_names(), ", "), seconds_since(t0));
  BagIndex val_channel = cfg.validation_dir.empty() ? BagIndex{}
                                                    : index_extra(cfg.validation_dir, cfg.validation_labels,
                                                                  data.classes, index_opts, data.feature_dim);
  if (!cfg.validation_dir.empty()) val_channel.digests = std::make_shared<SlideDigests>("validation");
  if (!cfg.test_dir.empty()) {
    data.test = index_extra(cfg.test_dir, cfg.test_labels, data.classes, index_opts, data.feature_dim);
  }
  data.folds = split_folds(cfg, train_all, val_channel, data.classes, data.test);
  spdlog::info("[train] {} model(s) to train: {} training / {} validation slides{}", data.folds.size(),
               data.folds[0].train.bags.size(), data.folds[0].val.bags.size(),
               cfg.folds > 0 ? fmt::format(" ({}-fold cross-validation)", cfg.folds) : "");
  return data;
}

std::vector<std::pair<std::string, const BagIndex*>> digest_sets(const JobData& data) {
  std::vector<std::pair<std::string, const BagIndex*>> sets;
  for (const FoldData& f : data.folds) {
    sets.emplace_back("fold " + std::to_string(f.fold) + " train", &f.train);
    sets.emplace_back("fold " + std::to_string(f.fold) + " validation", &f.val);
  }
  return sets;
}

std::vector<std::shared_ptr<SlideDigests>> digest_books(const JobData& data) {
  std::vector<std::shared_ptr<SlideDigests>> books;
  for (const FoldData& f : data.folds) {
    for (const BagIndex* set : {&f.train, &f.val}) {
      if (set->digests && std::find(books.begin(), books.end(), set->digests) == books.end()) {
        books.push_back(set->digests);
      }
    }
  }
  return books;
}

}  // namespace mil
