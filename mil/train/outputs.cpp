#include "mil/train/outputs.hpp"

#include <spdlog/spdlog.h>

#include "mil/eval/predictions.hpp"
#include "mil/io/files.hpp"
#include "mil/util/json.hpp"

namespace mil {
namespace {

// The model with the best selection score (the first among equals; a model without one loses).
size_t best_model(const std::vector<TrainedModel>& models) {
  size_t best = 0;
  for (size_t i = 0; i < models.size(); ++i) {
    if (models[i].info["best_score"].is_number() &&
        (!models[best].info["best_score"].is_number() ||
         models[i].info["best_score"].get<double>() > models[best].info["best_score"].get<double>())) {
      best = i;
    }
  }
  return best;
}

// With --folds: each fold's model in fold_<i>/ and the cross-validation summary.
void write_cross_validation(const TrainConfig& cfg, FoldResults& results, nlohmann::json& summary) {
  for (size_t i = 0; i < results.models.size(); ++i) {
    save_trained_model(cfg.model_dir + "/fold_" + std::to_string(results.folds[i]), results.models[i]);
  }
  std::vector<double> accs, aucs;
  for (const auto& r : results.val) {
    accs.push_back(r.metrics.accuracy);
    aucs.push_back(r.metrics.mean_auc());
  }
  const auto [acc_mean, acc_std] = mean_std(accs);
  const auto [auc_mean, auc_std] = mean_std(aucs);
  summary["cv_accuracy_mean"] = number_or_null(acc_mean);
  summary["cv_accuracy_std"] = number_or_null(acc_std);
  summary["cv_auc_mean"] = number_or_null(auc_mean);
  summary["cv_auc_std"] = number_or_null(auc_std);
  spdlog::info("[train] cross-validation: accuracy {:.4f} +- {:.4f}, AUC {:.4f} +- {:.4f}", acc_mean, acc_std, auc_mean,
               auc_std);
  fmt::print("[metrics] cv_accuracy_mean={:.6f} cv_accuracy_std={:.6f} cv_auc_mean={:.6f} cv_auc_std={:.6f}\n",
             acc_mean, acc_std, auc_mean, auc_std);
}

// The best model, directly loadable by dsmil_eval, and its part of the summary.
void write_best_model(const TrainConfig& cfg, const JobData& data, FoldResults& results, size_t best,
                      nlohmann::json& summary) {
  TrainedModel& model = results.models[best];
  save_trained_model(cfg.model_dir, model);
  summary["best_fold"] = model.info["fold"];
  summary["best_epoch"] = model.info["best_epoch"];
  summary["best_score"] = model.info["best_score"];
  summary["classes"] = data.classes.to_json();
  if (!results.val[best].probs.empty()) {
    const EvalMetrics& v = results.val[best].metrics;
    summary["validation"] = metrics_to_json(v);
    fmt::print("[metrics] best_epoch={} best_validation_auc={:.6f} best_validation_accuracy={:.6f}\n",
               model.info["best_epoch"].get<int>(), v.mean_auc(), v.accuracy);
  }
}

// The test set scored by the majority vote of every model, into the summary and the predictions.
void write_test(const JobData& data, const FoldResults& results, const std::vector<EvalResult>& test,
                nlohmann::json& summary, PredictionsWriter& predictions) {
  const VoteResult vote = combine_votes(test, results.models);
  const EvalMetrics& m = vote.metrics;
  summary["test"] = metrics_to_json(m);
  summary["test"]["models_voting"] = results.models.size();
  spdlog::info("[test] {} slides: accuracy {:.4f}, AUC {:.4f}{}", data.test.bags.size(), m.accuracy, m.mean_auc(),
               results.models.size() > 1 ? fmt::format(" (majority vote of {} models)", results.models.size()) : "");
  fmt::print("[metrics] test_accuracy={:.6f} test_auc={:.6f}\n", m.accuracy, m.mean_auc());
  predictions.add(vote.mean, vote.voted, "test", -1);
}

}  // namespace

void write_outputs(const TrainConfig& cfg, const JobData& data, FoldResults& results,
                   const std::vector<EvalResult>& test, const Reporter& reporter) {
  io::ensure_dir(cfg.output_dir, "the output directory");
  nlohmann::json summary;
  const size_t best = best_model(results.models);
  if (results.models.size() > 1) write_cross_validation(cfg, results, summary);
  write_best_model(cfg, data, results, best, summary);

  PredictionsWriter predictions(data.classes);
  for (size_t i = 0; i < results.models.size(); ++i) {
    predictions.add(results.val[i], predict_labels(results.val[i].probs, results.models[i].thresholds), "val",
                    results.folds[i]);
  }
  if (!test.empty()) write_test(data, results, test, summary, predictions);
  predictions.write(cfg.output_dir + "/predictions.csv");

  const nlohmann::json metrics = {{"epochs", reporter.records()}, {"summary", summary}};
  io::write_file_atomically(cfg.output_dir + "/metrics.json", metrics.dump(2) + "\n");
  io::write_file_atomically(cfg.output_dir + "/config.json", to_json(cfg).dump(2) + "\n");
  spdlog::info("[train] done in {}: model in {}, metrics and predictions in {}", format_duration(reporter.elapsed()),
               cfg.model_dir, cfg.output_dir);
}

}  // namespace mil
