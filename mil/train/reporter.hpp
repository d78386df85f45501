#pragma once
// What a training job tells people and tools about its epochs: a progress line with the ETA, the stable
// `[metrics]` line SageMaker's metric regexes read, TensorBoard scalars, and metrics.json's epoch records.
#include <limits>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "mil/config/train_config.hpp"
#include "mil/io/tensorboard_writer.hpp"
#include "mil/util/clock.hpp"

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

class Reporter {
 public:
  // Only the main rank prints metric lines and writes TensorBoard files; every rank keeps the records.
  Reporter(const TrainConfig& cfg, bool is_main);

  // The epochs the job will train in all (for the ETA), and how many of them are done.
  void plan(int total_epochs) { total_planned_ = total_epochs; }
  void skip_epochs(int epochs) { total_planned_ -= epochs; }  // a fold stopped early
  // Continue the counts and records of an earlier process of the same job.
  void restore(nlohmann::json records, int total_planned, int epochs_done);

  // Starts TensorBoard's event file (main rank, unless --tensorboard-dir none).
  void open_tensorboard();

  // Reports one finished epoch; `fold_text` is " fold i/K" or empty.
  void epoch(const EpochRecord& rec, const std::string& fold_text, bool improved);

  const nlohmann::json& records() const { return records_; }
  int total_planned() const { return total_planned_; }
  int epochs_done() const { return epochs_done_; }
  double elapsed() const { return seconds_since(start_); }

 private:
  void print_metric_line(const EpochRecord& rec) const;
  void write_scalars(const EpochRecord& rec);

  const TrainConfig& cfg_;
  bool is_main_;
  Clock::time_point start_ = Clock::now();
  nlohmann::json records_ = nlohmann::json::array();
  int total_planned_ = 0;
  int epochs_done_ = 0;
  int epochs_done_at_start_ = 0;                   // by earlier processes of a resumed job (for the ETA)
  std::optional<io::TensorBoardLog> tensorboard_;  // a write failure turns it off with a warning
};

}  // namespace mil
