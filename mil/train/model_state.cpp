#include "mil/train/model_state.hpp"

#include "mil/model/state_dict.hpp"
#include "mil/train/optimizer.hpp"

namespace mil {

TrainedModel untrained_model(const TrainConfig& cfg, const ClassMap& classes, int64_t feature_dim) {
  ModelConfig mc;
  mc.feature_dim = feature_dim;
  mc.num_classes = classes.num_classes();
  mc.nonlinear_q = cfg.nonlinear_q;
  mc.passing_v = cfg.passing_v;
  mc.dropout_v = cfg.dropout_node;
  mc.value_relu = cfg.value_relu;
  TrainedModel model;
  model.net = DsmilNet(mc);
  model.classes = classes;
  model.average = cfg.average;
  model.thresholds.assign(static_cast<size_t>(mc.num_classes), 0.5);
  return model;
}

FinishedRun finished_run(TrainedModel& model, const EvalResult& val, int fold) {
  FinishedRun r;
  r.fold = fold;
  r.weights = state_dict_of(*model.net);
  r.feature_mean = model.feature_mean;
  r.feature_std = model.feature_std;
  r.thresholds = model.thresholds;
  r.info = model.info;
  r.val_loss = val.loss;
  r.val_probs = val.probs;
  return r;
}

TrainedModel restore_finished(const FinishedRun& run, TrainedModel model, const torch::Device& device,
                              const std::string& source) {
  load_state_dict(*model.net, run.weights, source);
  model.net->to(device);
  model.net->eval();
  model.thresholds = run.thresholds;
  model.feature_mean = run.feature_mean;
  model.feature_std = run.feature_std;
  model.info = run.info;
  return model;
}

void capture_run(RunProgress& p, TrainedModel& model, std::string optimizer_state, const EvalResult& best_val) {
  p.weights = state_dict_of(*model.net);
  p.optimizer = std::move(optimizer_state);
  p.feature_mean = model.feature_mean;
  p.feature_std = model.feature_std;
  p.best_val_loss = best_val.loss;
  p.best_val_probs = best_val.probs;
}

void release_run(RunProgress& p) {
  p.weights.clear();
  p.optimizer.clear();
  p.bag_stats.clear();
  p.best_val_probs.clear();
}

}  // namespace mil
