#include "mil/train/reporter.hpp"

#include <spdlog/spdlog.h>

#include <cmath>
#include <cstdio>

#include "mil/eval/metrics.hpp"
#include "mil/util/json.hpp"

namespace mil {

nlohmann::json EpochRecord::to_json() const {
  nlohmann::json aucs = nlohmann::json::array();
  for (double a : val_auc) aucs.push_back(number_or_null(a));
  return {{"fold", fold},
          {"epoch", epoch},
          {"train_loss", train_loss},
          {"val_loss", number_or_null(val_loss)},
          {"val_auc", aucs},
          {"val_accuracy", number_or_null(val_accuracy)},
          {"lr", lr},
          {"seconds", seconds},
          {"instances_per_second", instances_per_second}};
}

Reporter::Reporter(const TrainConfig& cfg, bool is_main) : cfg_(cfg), is_main_(is_main) {}

void Reporter::restore(nlohmann::json records, int total_planned, int epochs_done) {
  records_ = std::move(records);
  total_planned_ = total_planned;
  epochs_done_ = epochs_done_at_start_ = epochs_done;
}

void Reporter::open_tensorboard() {
  if (!is_main_ || !tensorboard_enabled(cfg_)) return;
  tensorboard_.emplace(cfg_.tensorboard_dir);
  if (tensorboard_->enabled()) spdlog::info("[train] TensorBoard events: {}", tensorboard_->path());
}

void Reporter::epoch(const EpochRecord& rec, const std::string& fold_text, bool improved) {
  ++epochs_done_;
  const double elapsed = seconds_since(start_);
  const double eta = elapsed / std::max(1, epochs_done_ - epochs_done_at_start_) * (total_planned_ - epochs_done_);
  spdlog::info(
      "[train]{} epoch {}/{}: train_loss {:.4f}, val_loss {:.4f}, val_auc {:.4f}, val_accuracy {:.4f}, "
      "lr {:.3g}, {:.1f}s ({:.0f} instances/s){}; elapsed {}, eta {}",
      fold_text, rec.epoch, cfg_.epochs, rec.train_loss, rec.val_loss, mean_std(rec.val_auc).first, rec.val_accuracy,
      rec.lr, rec.seconds, rec.instances_per_second, improved ? ", best so far" : "", format_duration(elapsed),
      format_duration(eta));
  if (is_main_) {
    print_metric_line(rec);
    if (tensorboard_) write_scalars(rec);
  }
  records_.push_back(rec.to_json());
}

// The stable metric line for SageMaker metric_definitions (see README); numbers only, one per key.
void Reporter::print_metric_line(const EpochRecord& rec) const {
  std::string auc_text;
  for (size_t c = 0; c < rec.val_auc.size(); ++c) auc_text += fmt::format(" val_auc_{}={:.6f}", c, rec.val_auc[c]);
  fmt::print(
      "[metrics] fold={} epoch={} train_loss={:.6f} val_loss={:.6f} val_auc={:.6f} val_accuracy={:.6f} "
      "lr={:.6g} instances_per_second={:.1f}{}\n",
      rec.fold, rec.epoch, rec.train_loss, rec.val_loss, mean_std(rec.val_auc).first, rec.val_accuracy, rec.lr,
      rec.instances_per_second, auc_text);
  std::fflush(stdout);
}

// One epoch's metrics as TensorBoard scalars at step = the 1-based epoch, under fold_<k>/ with --folds. NaN
// (no validation set, an undefined AUC) is left out: TensorBoard cannot plot it.
void Reporter::write_scalars(const EpochRecord& rec) {
  const std::string prefix = cfg_.folds > 0 ? fmt::format("fold_{}/", rec.fold) : "";
  const auto add = [&](const std::string& tag, double value) {
    if (!std::isnan(value)) tensorboard_->add_scalar(prefix + tag, value, rec.epoch);
  };
  add("train/loss", rec.train_loss);
  add("val/loss", rec.val_loss);
  add("val/auc", mean_std(rec.val_auc).first);
  if (rec.val_auc.size() > 1) {
    for (size_t c = 0; c < rec.val_auc.size(); ++c) add(fmt::format("val/auc_{}", c), rec.val_auc[c]);
  }
  add("val/accuracy", rec.val_accuracy);
  add("train/lr", rec.lr);
  add("train/instances_per_second", rec.instances_per_second);
  tensorboard_->flush();  // a TensorBoard watching the directory shows the epoch now
}

}  // namespace mil
