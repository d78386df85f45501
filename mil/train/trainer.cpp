#include "mil/train/trainer.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <optional>

#include "mil/eval/evaluation.hpp"
#include "mil/io/files.hpp"
#include "mil/model/precision.hpp"
#include "mil/train/checkpoint_writer.hpp"
#include "mil/train/fold_trainer.hpp"
#include "mil/train/job_data.hpp"
#include "mil/train/model_state.hpp"
#include "mil/train/outputs.hpp"
#include "mil/train/reporter.hpp"
#include "mil/train/scheduler.hpp"
#include "mil/util/device.hpp"
#include "mil/util/error.hpp"
#include "mil/util/host_memory.hpp"
#include "mil/util/threads.hpp"

namespace mil {
namespace {

// The job's progress as a checkpoint keeps it: the finished folds and, during a fold, `current`.
JobProgress job_progress(FoldResults& results, const Reporter& reporter, const RunProgress* current) {
  JobProgress progress;
  for (size_t i = 0; i < results.models.size(); ++i) {
    progress.finished.push_back(finished_run(results.models[i], results.val[i], results.folds[i]));
  }
  if (current != nullptr) progress.current = *current;
  progress.epoch_records = reporter.records();
  progress.total_epochs_planned = reporter.total_planned();
  progress.epochs_done = reporter.epochs_done();
  return progress;
}

// Continues where an earlier process of this job stopped: its finished folds, counts and records.
void resume_job(const TrainConfig& cfg, const JobData& data, const torch::Device& device, JobProgress& progress,
                FoldResults& results, Reporter& reporter) {
  const size_t finished = progress.finished.size();
  const std::vector<FoldData>& folds = data.folds;
  bool fits = finished <= folds.size() &&
              (!progress.current || (finished < folds.size() && progress.current->fold == folds[finished].fold));
  for (size_t i = 0; fits && i < finished; ++i) fits = progress.finished[i].fold == folds[i].fold;
  if (!fits) throw Error(cfg.checkpoint_dir, "", "the newest checkpoint does not fit this job's folds");
  spdlog::info("[ckpt] resuming from checkpoint {} in {}: {} of {} model(s) finished", progress.sequence,
               cfg.checkpoint_dir, finished, folds.size());
  reporter.restore(std::move(progress.epoch_records), progress.total_epochs_planned, progress.epochs_done);
  for (size_t i = 0; i < finished; ++i) {
    const FinishedRun& f = progress.finished[i];
    results.folds.push_back(f.fold);
    results.models.push_back(
        restore_finished(f, untrained_model(cfg, data.classes, data.feature_dim), device, cfg.checkpoint_dir));
    results.val.push_back(restored_eval(folds[i].val, f.val_probs, f.val_loss));
  }
}

// Where the memory went: the peak (model, largest bag, read-ahead, cache) and the cache's part of it.
void log_memory(const BagCache* cache, const JobData& data) {
  int64_t largest = 0;
  for (const auto& [name, index] : digest_sets(data)) {
    for (const BagInfo& b : index->bags) largest = std::max(largest, b.num_instances);
  }
  spdlog::info("[train] peak resident memory {:.0f} MB; feature cache {:.0f} MB{} ({} bags{}); largest bag {} x {}",
               peak_resident_bytes() / 1e6, cache ? cache->bytes() / 1e6 : 0.0,
               cache && !cache->device().is_cpu() ? " on " + cache->device().str() : "", cache ? cache->bags() : 0,
               cache && cache->bags_over_budget() > 0
                   ? fmt::format(", {} left on disk by the {:.1f} GB budget", cache->bags_over_budget(),
                                 cache->budget_bytes() / 1e9)
                   : "",
               largest, data.feature_dim);
}

// The feature cache of the whole job (all folds, training and validation bags).
std::shared_ptr<BagCache> job_cache(const TrainConfig& cfg, const Communicator& comm, const torch::Device& device) {
  const CacheMode mode = cache_mode_for(cfg.cache, cfg.precision == "bf16");
  if (cache_on_device(cfg.cache)) {
    std::shared_ptr<BagCache> cache = make_device_bag_cache(mode, cfg.cache_budget, device);
    spdlog::info("[data] --cache gpu: features kept on {} as {} up to {:.1f} GB per rank", device.str(),
                 cache_mode_name(mode), cache->budget_bytes() / 1e9);
    return cache;
  }
  if (cfg.cache != "auto") return make_bag_cache(mode, cfg.cache_budget);
  std::shared_ptr<BagCache> cache =
      make_auto_bag_cache(mode, cfg.cache_budget, available_memory_bytes(), comm.local_size());
  if (cache) {
    spdlog::info("[data] --cache auto: features kept in RAM as {} up to {:.1f} GB per rank", cache_mode_name(mode),
                 cache->budget_bytes() / 1e9);
  } else {
    spdlog::info("[data] --cache auto: free memory unknown, features are read from disk every epoch");
  }
  return cache;
}

// `--threads 0` on a CPU: one thread where the steps are small (auto_thread_count_for_steps), judged by the
// first model's training bags.
void fit_threads_to_steps(const TrainConfig& cfg, const JobData& data, const torch::Device& device) {
  if (cfg.threads != 0 || !device.is_cpu() || data.folds.empty() || data.folds[0].train.bags.empty()) return;
  const BagIndex& train = data.folds[0].train;
  const double per_step = static_cast<double>(train.total_instances()) / static_cast<double>(train.bags.size()) *
                          static_cast<double>(cfg.bags_per_step);
  const int threads = torch::get_num_threads();
  const int fitted = auto_thread_count_for_steps(threads, per_step, data.feature_dim);
  if (fitted == threads) return;
  torch::set_num_threads(fitted);
  spdlog::info(
      "[train] --threads 0: {} libtorch thread(s), not {}: steps of {:.0f} instances x D = {} train faster "
      "on one (--threads N overrides)",
      torch::get_num_threads(), threads, per_step, data.feature_dim);
}

}  // namespace

void run_training(const TrainConfig& cfg, Communicator& comm) {
  Reporter reporter(cfg, comm.is_main());
  if (comm.is_main()) {  // before any data is read: a bad output place fails now
    io::ensure_writable_directories({{cfg.model_dir, "model directory"},
                                     {cfg.output_dir, "output directory"},
                                     {cfg.checkpoint_dir, "checkpoint directory"}});
  }
  CheckpointWriter checkpoints(cfg, comm);  // holds the checkpoint directory: a second job is refused now
  const torch::Device device = resolve_device(cfg.device, comm.local_rank(), comm.local_size());
  require_precision_support(parse_precision(cfg.precision), device);  // before any data is read
  const int64_t bags_per_step = static_cast<int64_t>(comm.world_size()) * cfg.accumulate * cfg.bags_per_step;
  spdlog::info(
      "[train] device {}, precision {}, {} libtorch thread(s); {} rank(s) x {} bag(s) = {} bag(s) per optimiser "
      "step{}",
      device.str(), cfg.precision, torch::get_num_threads(), comm.world_size(), cfg.accumulate * cfg.bags_per_step,
      bags_per_step, cfg.bags_per_step > 1 ? fmt::format(", packed {} to a forward/backward", cfg.bags_per_step) : "");
  if (comm.world_size() > 1) spdlog::info("[dist] collectives over {}", comm.describe());
  std::shared_ptr<BagCache> cache = job_cache(cfg, comm, device);  // before any data is read: --cache gpu on a CPU
  const JobData data = load_job_data(cfg);
  fit_threads_to_steps(cfg, data, device);
  reporter.plan(cfg.epochs * static_cast<int>(data.folds.size()));

  // Checkpoints: continue where an earlier process of this job stopped.
  FoldResults results;
  checkpoints.track(digest_books(data));
  std::optional<JobProgress> progress =
      checkpoints.load({training_settings(cfg), data_digest(digest_sets(data)), bags_per_step, comm.world_size()});
  if (progress) resume_job(cfg, data, device, *progress, results, reporter);
  reporter.open_tensorboard();

  // Train the folds not finished yet.
  const FoldContext ctx{cfg,
                        comm,
                        device,
                        data.classes,
                        reporter,
                        std::move(cache),
                        [&] { return checkpoints.seconds_since_last(); },
                        [&](const RunProgress& current, const std::string& moment) {
                          checkpoints.write([&] { return job_progress(results, reporter, &current); }, moment);
                        }};
  for (size_t i = results.models.size(); i < data.folds.size(); ++i) {
    std::optional<RunProgress> resume;
    if (progress && progress->current) std::swap(resume, progress->current);
    FoldOutcome outcome = train_fold(ctx, data.folds[i], std::move(resume));
    results.folds.push_back(data.folds[i].fold);
    results.models.push_back(std::move(outcome.model));
    results.val.push_back(std::move(outcome.best_val));
    checkpoints.write([&] { return job_progress(results, reporter, nullptr); },
                      fmt::format("fold {} finished", data.folds[i].fold));
    stop_if_asked(comm);
  }

  // Test, then outputs (main rank).
  std::vector<EvalResult> test;  // per model
  for (TrainedModel& m : results.models) {
    if (data.test.bags.empty()) break;
    test.push_back(evaluate_bags(m, data.test, cfg.features_key, cfg.prefetch, device, m.thresholds, comm));
  }
  if (comm.is_main()) write_outputs(cfg, data, results, test, reporter);
  log_memory(ctx.cache.get(), data);
}

}  // namespace mil
