#include "mil/train/trainer.hpp"

#include <ATen/CPUGeneratorImpl.h>
#include <spdlog/spdlog.h>

#include <chrono>
#include <cmath>
#include <csignal>
#include <filesystem>
#include <fstream>
#include <functional>
#include <mutex>
#include <numeric>
#include <optional>
#include <sstream>

#include "mil/data/bag_loader.hpp"
#include "mil/data/sampler.hpp"
#include "mil/data/splits.hpp"
#include "mil/dist/parameter_sync.hpp"
#include "mil/io/files.hpp"
#include "mil/io/tensorboard_writer.hpp"
#include "mil/model/loss.hpp"
#include "mil/model/state_dict.hpp"
#include "mil/train/checkpoint_state.hpp"
#include "mil/train/optimizer.hpp"
#include "mil/util/error.hpp"
#include "mil/util/stop_signal.hpp"

namespace mil {
namespace {

using Clock = std::chrono::steady_clock;
double seconds_since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

nlohmann::json number_or_null(double v) {
  return std::isfinite(v) ? nlohmann::json(v) : nlohmann::json(nullptr);
}

BagIndex subset(const BagIndex& index, const std::vector<int64_t>& positions) {
  BagIndex out;
  out.channel = index.channel;
  out.feature_dim = index.feature_dim;
  for (int64_t i : positions) out.bags.push_back(index.bags[static_cast<size_t>(i)]);
  return out;
}

torch::Tensor target_tensor(const BagInfo& bag) {
  return torch::tensor(bag.target, torch::kFloat);
}

std::vector<int> strata_of(const BagIndex& index, const ClassMap& classes) {
  std::vector<int> strata;
  for (const auto& b : index.bags) strata.push_back(classes.stratum(b.target));
  return strata;
}

// Per-feature mean and standard deviation over every instance of the training bags (one streaming pass,
// in float64 so millions of instances do not lose precision).
std::pair<torch::Tensor, torch::Tensor> feature_statistics(const BagIndex& train, const std::string& features_key,
                                                           int prefetch) {
  BagLoader loader(train, {features_key, prefetch, CacheMode::kNone, false});
  std::vector<int64_t> order(train.bags.size());
  std::iota(order.begin(), order.end(), 0);
  loader.start(order);
  torch::Tensor sum = torch::zeros({train.feature_dim}, torch::kDouble);
  torch::Tensor sum_sq = torch::zeros({train.feature_dim}, torch::kDouble);
  int64_t n = 0;
  for (size_t i = 0; i < order.size(); ++i) {
    const torch::Tensor x = loader.next().features.to(torch::kDouble);
    sum += x.sum(0);
    sum_sq += (x * x).sum(0);
    n += x.size(0);
  }
  const torch::Tensor mean = sum / n;
  torch::Tensor var = (sum_sq / n - mean * mean).clamp_min(0);
  // Constant features would divide by zero: leave them unscaled.
  torch::Tensor std = var.sqrt();
  std = torch::where(std > 1e-12, std, torch::ones_like(std));
  return {mean.to(torch::kFloat), std.to(torch::kFloat)};
}

struct Job {
  Job(const TrainConfig& c, Communicator& m, torch::Device d) : cfg(c), comm(m), device(d) {}
  const TrainConfig& cfg;
  Communicator& comm;
  torch::Device device;
  ClassMap classes;
  nlohmann::json epoch_records = nlohmann::json::array();
  Clock::time_point start = Clock::now();
  int total_epochs_planned = 0;
  int epochs_done = 0;
  int epochs_done_at_start = 0;  // by earlier processes of a resumed job (for the ETA)
  bool cache_logged = false;
  std::shared_ptr<BagCache> cache;  // --cache: one RAM cache for every fold and the validation set; null = none
  // The fold of each model to train, and the models finished so far with their validation scores.
  std::vector<int> run_folds;
  std::vector<TrainedModel> models;
  std::vector<EvalResult> val_results;
  // Checkpoints: what they must match, where they go (main rank only), how many so far.
  JobIdentity identity;
  std::optional<CheckpointStore> store;
  int64_t sequence = 0;
  Clock::time_point last_checkpoint = Clock::now();
  std::optional<io::TensorBoardWriter> tensorboard;  // main rank only; absent with --tensorboard-dir none
};

std::string format_duration(double s) {
  char buf[32];
  if (s < 120) {
    std::snprintf(buf, sizeof(buf), "%.0fs", s);
  } else if (s < 7200) {
    std::snprintf(buf, sizeof(buf), "%.1fmin", s / 60);
  } else {
    std::snprintf(buf, sizeof(buf), "%.1fh", s / 3600);
  }
  return buf;
}

// One epoch's metrics as TensorBoard scalars at step = the 1-based epoch. NaN (no validation set, an undefined
// AUC) is left out: TensorBoard cannot plot it.
void write_epoch_scalars(io::TensorBoardWriter& tb, const EpochRecord& rec, const std::string& prefix) {
  const auto add = [&](const std::string& tag, double value) {
    if (!std::isnan(value)) tb.add_scalar(prefix + tag, value, rec.epoch);
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
  tb.flush();  // a TensorBoard watching the directory shows the epoch now
}

// The seed of one bag's training pass, from (seed, epoch, slot) alone, so that R ranks and one process
// accumulating R bags draw the same patch and node dropout for the bag of a slot.
uint64_t slot_seed(uint64_t seed, int epoch, int64_t slot) {
  return mix64(mix64(mix64(seed) ^ static_cast<uint64_t>(epoch)) ^ static_cast<uint64_t>(slot));
}

// Every rank's rows of `width` float64 values, as one [total_rows, width] tensor on every rank: rank q's
// i-th row lands at row positions_of(q)[i]. Every rank knows every rank's positions, so only values travel.
torch::Tensor gather_rows(Communicator& comm, const std::vector<double>& mine, int64_t width, int64_t total_rows,
                          const std::function<std::vector<int64_t>(int)>& positions_of) {
  const torch::Tensor all = comm.allgather(torch::tensor(mine, torch::kDouble)).view({-1, width});
  std::vector<int64_t> positions;  // of the gathered rows, which come in rank order
  for (int q = 0; q < comm.world_size(); ++q) {
    const std::vector<int64_t> p = positions_of(q);
    positions.insert(positions.end(), p.begin(), p.end());
  }
  if (static_cast<int64_t>(positions.size()) != total_rows || all.size(0) != total_rows) {
    throw Error("", "gather_rows",
                "expected " + std::to_string(total_rows) + " rows, got " + std::to_string(all.size(0)));
  }
  return torch::empty({total_rows, width}, torch::kDouble).index_copy_(0, torch::tensor(positions), all);
}

// A model of this job's architecture on the CPU, its weights as constructed, thresholds 0.5.
TrainedModel untrained_model(const Job& job, int64_t feature_dim) {
  ModelConfig mc;
  mc.feature_dim = feature_dim;
  mc.num_classes = job.classes.num_classes();
  mc.nonlinear_q = job.cfg.nonlinear_q;
  mc.passing_v = job.cfg.passing_v;
  mc.dropout_v = job.cfg.dropout_node;
  mc.value_relu = job.cfg.value_relu;
  TrainedModel model;
  model.net = DsmilNet(mc);
  model.classes = job.classes;
  model.average = job.cfg.average;
  model.thresholds.assign(static_cast<size_t>(mc.num_classes), 0.5);
  return model;
}

// The scores of a validation set as evaluate_bags returned them, from the probabilities and loss a
// checkpoint kept (metrics are recomputed: thresholds fitted on the set, as during training).
EvalResult restored_eval(const BagIndex& set, std::vector<std::vector<double>> probs, double loss) {
  EvalResult r;
  if (probs.empty()) return r;
  for (const BagInfo& b : set.bags) {
    r.slide_ids.push_back(b.slide_id);
    r.targets.emplace_back(b.target.begin(), b.target.end());
  }
  r.probs = std::move(probs);
  r.loss = loss;
  r.metrics = evaluate(r.probs, r.targets, {});
  return r;
}

// Slot numbers of rank q's bags in the first `steps_done` steps of an epoch, in the order it trains them.
std::vector<int64_t> slots_of_rank(int q, int64_t steps_done, int per_rank, int64_t bags_per_step) {
  std::vector<int64_t> slots;
  for (int64_t step = 0; step < steps_done; ++step) {
    for (int k = 0; k < per_rank; ++k) slots.push_back(step * bags_per_step + q * per_rank + k);
  }
  return slots;
}

// Commits a checkpoint of the job as it stands: the finished models and, during a fold, `current`.
// Every rank calls it (they agree on when); only the main rank writes.
void write_checkpoint(Job& job, const RunProgress* current, const std::string& moment) {
  ++job.sequence;
  job.last_checkpoint = Clock::now();
  if (!job.comm.is_main()) return;
  JobProgress progress;
  progress.sequence = job.sequence;
  for (size_t i = 0; i < job.models.size(); ++i) {
    TrainedModel& m = job.models[i];
    FinishedRun r;
    r.fold = job.run_folds[i];
    r.weights = state_dict_of(*m.net);
    r.feature_mean = m.feature_mean;
    r.feature_std = m.feature_std;
    r.thresholds = m.thresholds;
    r.info = m.info;
    r.val_loss = job.val_results[i].loss;
    r.val_probs = job.val_results[i].probs;
    progress.finished.push_back(std::move(r));
  }
  if (current != nullptr) progress.current = *current;
  progress.epoch_records = job.epoch_records;
  progress.total_epochs_planned = job.total_epochs_planned;
  progress.epochs_done = job.epochs_done;
  const Clock::time_point t0 = Clock::now();
  const std::string path = job.store->write(job.sequence, encode_checkpoint(progress, job.identity));
  spdlog::info("[ckpt] wrote {} ({}) in {:.2f}s", path, moment, seconds_since(t0));
}

// Ends the job, every rank together, when any rank has been asked to stop (checked at epoch and fold ends,
// after a checkpoint).
void stop_if_asked(Job& job) {
  const int64_t sig = job.comm.allreduce_max(stop_signal());
  if (sig != 0) throw Interrupted(static_cast<int>(sig));
}

// Forward and backward of one training bag (gradients accumulate over the rank's bags of a step), with
// patch and node dropout drawn from `bag_seed`. Returns the bag's loss and the instances it trained on.
std::pair<double, int64_t> train_bag(const Job& job, TrainedModel& model, const BagIndex& train, const Bag& bag,
                                     uint64_t bag_seed) {
  {
    // Node dropout draws from the device's default generator.
    at::Generator device_gen = at::globalContext().defaultGenerator(job.device);
    std::lock_guard<std::mutex> lock(device_gen.mutex());
    device_gen.set_current_seed(mix64(bag_seed));
  }
  torch::Tensor x = model.prepare(bag.features, job.device);
  if (job.cfg.dropout_patch > 0) {
    // Patch dropout (training only): keep a random floor(N * (1 - p)) instances, at least one.
    const int64_t n = x.size(0);
    const int64_t keep = std::max<int64_t>(1, static_cast<int64_t>(std::floor(n * (1.0 - job.cfg.dropout_patch))));
    at::Generator patch_gen = at::detail::createCPUGenerator(bag_seed);
    x = x.index_select(0, torch::randperm(n, patch_gen, torch::kLong).slice(0, 0, keep).to(job.device));
  }
  const DsmilOutput out = model.net->forward(x);
  const torch::Tensor loss = dsmil_loss(out, target_tensor(train.bags[static_cast<size_t>(bag.index)]).to(job.device));
  loss.backward();
  return {loss.item<double>(), x.size(0)};
}

// An epoch's outcome for people (a progress line with the ETA), for SageMaker's metric regexes (the
// [metrics] line) and for TensorBoard; the record joins metrics.json's epochs.
void report_epoch(Job& job, const EpochRecord& rec, const std::string& fold_text, bool improved) {
  const TrainConfig& cfg = job.cfg;
  ++job.epochs_done;
  const double elapsed = seconds_since(job.start);
  const double eta =
      elapsed / std::max(1, job.epochs_done - job.epochs_done_at_start) * (job.total_epochs_planned - job.epochs_done);
  std::string auc_text;
  for (size_t c = 0; c < rec.val_auc.size(); ++c) auc_text += fmt::format(" val_auc_{}={:.6f}", c, rec.val_auc[c]);
  spdlog::info(
      "[train]{} epoch {}/{}: train_loss {:.4f}, val_loss {:.4f}, val_auc {:.4f}, val_accuracy {:.4f}, "
      "lr {:.3g}, {:.1f}s ({:.0f} instances/s){}; elapsed {}, eta {}",
      fold_text, rec.epoch, cfg.epochs, rec.train_loss, rec.val_loss, mean_std(rec.val_auc).first, rec.val_accuracy,
      rec.lr, rec.seconds, rec.instances_per_second, improved ? ", best so far" : "", format_duration(elapsed),
      format_duration(eta));
  // The stable metric line for SageMaker metric_definitions (see README); numbers only, one per key.
  if (job.comm.is_main()) {
    fmt::print(
        "[metrics] fold={} epoch={} train_loss={:.6f} val_loss={:.6f} val_auc={:.6f} val_accuracy={:.6f} "
        "lr={:.6g} instances_per_second={:.1f}{}\n",
        rec.fold, rec.epoch, rec.train_loss, rec.val_loss, mean_std(rec.val_auc).first, rec.val_accuracy, rec.lr,
        rec.instances_per_second, auc_text);
    std::fflush(stdout);
    if (job.tensorboard)
      write_epoch_scalars(*job.tensorboard, rec, cfg.folds > 0 ? fmt::format("fold_{}/", rec.fold) : "");
  }
  job.epoch_records.push_back(rec.to_json());
}

// Trains one model on `train` and selects its best epoch on `val` (when there is one), from scratch or from
// `resume`. `best_val` receives the validation scores of the kept epoch (empty without a validation set).
TrainedModel train_model(Job& job, const BagIndex& train, const BagIndex& val, int fold, EvalResult* best_val,
                         std::optional<RunProgress> resume) {
  const TrainConfig& cfg = job.cfg;
  TrainedModel model = untrained_model(job, train.feature_dim);
  model.net->init_orthogonal(cfg.seed + static_cast<uint64_t>(fold));
  model.net->to(job.device);
  const std::vector<torch::Tensor> params = model.net->parameters();
  broadcast_parameters(params, job.comm, 0);

  // The counters a checkpoint keeps; weights and optimiser state are added to it when one is written.
  RunProgress p;
  if (resume) {
    p = std::move(*resume);
    load_state_dict(*model.net, p.weights, job.cfg.checkpoint_dir);
    model.feature_mean = p.feature_mean;
    model.feature_std = p.feature_std;
    *best_val = restored_eval(val, std::move(p.best_val_probs), p.best_val_loss);
  } else {
    p.fold = fold;
    p.best_weights = state_dict_of(*model.net);
    p.best_thresholds = model.thresholds;
    if (cfg.standardize) {
      // Rank 0 reads the training split once; the other ranks take its statistics.
      if (job.comm.is_main()) {
        std::tie(model.feature_mean, model.feature_std) = feature_statistics(train, cfg.features_key, cfg.prefetch);
      } else {
        model.feature_mean = torch::empty({train.feature_dim}, torch::kFloat);
        model.feature_std = torch::empty({train.feature_dim}, torch::kFloat);
      }
      job.comm.broadcast(model.feature_mean, 0);
      job.comm.broadcast(model.feature_std, 0);
    }
  }

  OptimizerConfig opt_cfg;
  opt_cfg.lr = cfg.lr;
  opt_cfg.weight_decay = cfg.weight_decay;
  opt_cfg.min_lr = cfg.min_lr;
  auto optimizer = make_adam(params, opt_cfg);
  if (resume) load_optimizer_state(*optimizer, p.optimizer, job.cfg.checkpoint_dir);
  p.weights.clear();
  p.optimizer.clear();

  // A step trains one bag per sampler slot: world_size * accumulate slots, rank r taking slots
  // [r * accumulate, (r + 1) * accumulate). The plan depends only on the slot count, and size balancing
  // is on whenever a step has more than one bag, so R ranks and one process with --accumulate R train
  // the same bags in the same steps.
  const int per_rank = cfg.accumulate;
  const int first_slot = job.comm.rank() * per_rank;
  const int64_t bags_per_step = static_cast<int64_t>(job.comm.world_size()) * per_rank;
  SamplerOptions sampler_opts;
  sampler_opts.seed = cfg.seed + static_cast<uint64_t>(fold);
  sampler_opts.world_size = static_cast<int>(bags_per_step);
  sampler_opts.size_balanced = bags_per_step > 1;
  const EpochSampler sampler(train.sizes(), sampler_opts);
  const int64_t steps = sampler.steps_per_epoch();
  if (bags_per_step > 1 && !resume) {
    // How long the fastest bag of a step waits for the slowest at the all-reduce (1 = never).
    SamplerOptions plain = sampler_opts;
    plain.size_balanced = false;
    spdlog::info(
        "[data] {} bags per step: straggler ratio (max / mean instances in a step) {:.3f}, {:.3f} with "
        "plain sharding",
        bags_per_step, sampler.straggler_ratio(0), EpochSampler(train.sizes(), plain).straggler_ratio(0));
  }
  BagLoader loader(train, {cfg.features_key, cfg.prefetch, CacheMode::kNone, false}, job.cache);
  const uint64_t dropout_seed = cfg.seed * 7919 + static_cast<uint64_t>(fold);
  const std::string fold_text =
      cfg.folds > 0 ? " fold " + std::to_string(fold + 1) + "/" + std::to_string(cfg.folds) : "";
  if (resume) {
    spdlog::info("[ckpt]{} resuming at epoch {}/{}, step {}/{}", fold_text, p.epoch + 1, cfg.epochs, p.step, steps);
  }

  // This rank's (loss, instances) per bag of the epoch so far, in the order trained.
  std::vector<double> bag_stats;
  // Checkpoints inside an epoch carry every rank's bag_stats, in slot order.
  const auto checkpoint_run = [&](const std::string& moment) {
    p.bag_stats.clear();
    if (p.step > 0) {
      const torch::Tensor all = gather_rows(job.comm, bag_stats, 2, p.step * bags_per_step,
                                            [&](int q) { return slots_of_rank(q, p.step, per_rank, bags_per_step); });
      p.bag_stats.assign(all.data_ptr<double>(), all.data_ptr<double>() + all.numel());
    }
    if (job.comm.is_main()) {
      p.weights = state_dict_of(*model.net);
      p.optimizer = save_optimizer_state(*optimizer);
      p.feature_mean = model.feature_mean;
      p.feature_std = model.feature_std;
      p.best_val_loss = best_val->loss;
      p.best_val_probs = best_val->probs;
    }
    write_checkpoint(job, &p, moment);
    p.weights.clear();
    p.optimizer.clear();
    p.bag_stats.clear();
    p.best_val_probs.clear();
  };

  while (p.epoch < cfg.epochs) {
    const int epoch = p.epoch;
    const Clock::time_point epoch_start = Clock::now();
    const double lr = cosine_lr(opt_cfg, epoch, cfg.epochs);
    set_lr(*optimizer, lr);
    model.net->train();
    // Mid-epoch after a restart: this rank's share of the steps already taken comes from the checkpoint.
    bag_stats.clear();
    const std::vector<int64_t> done = slots_of_rank(job.comm.rank(), p.step, per_rank, bags_per_step);
    for (int64_t slot : done) {
      bag_stats.push_back(p.bag_stats.at(static_cast<size_t>(2 * slot)));
      bag_stats.push_back(p.bag_stats.at(static_cast<size_t>(2 * slot + 1)));
    }
    p.bag_stats.clear();
    std::vector<int64_t> order = sampler.slot_sequence(epoch, first_slot, per_rank);
    order.erase(order.begin(), order.begin() + p.step * per_rank);
    loader.start(order);
    const int64_t first_step = p.step;  // of this process: throughput counts only what it trained
    int64_t instances = 0;
    Clock::time_point last_progress = Clock::now();
    for (int64_t step = p.step; step < steps; ++step) {
      optimizer->zero_grad();
      for (int k = 0; k < per_rank; ++k) {
        const uint64_t bag_seed = slot_seed(dropout_seed, epoch, step * bags_per_step + first_slot + k);
        const auto [loss, trained] = train_bag(job, model, train, loader.next(), bag_seed);
        bag_stats.push_back(loss);
        bag_stats.push_back(static_cast<double>(trained));
        instances += trained;
      }
      // Ranks asked to stop (SIGTERM, SIGINT), and whether rank 0's clock says a checkpoint is due, ride in
      // the gradient all-reduce: every rank learns both at the same step.
      const int sig = stop_signal();
      std::vector<float> flags = {sig == SIGTERM ? 1.0f : 0.0f, sig == SIGINT ? 1.0f : 0.0f,
                                  job.comm.is_main() && cfg.checkpoint_every_seconds > 0 &&
                                          seconds_since(job.last_checkpoint) >= cfg.checkpoint_every_seconds
                                      ? 1.0f
                                      : 0.0f};
      average_gradients(params, job.comm, bags_per_step, &flags);
      optimizer->step();
      p.step = step + 1;
      const bool stop = flags[0] > 0 || flags[1] > 0;
      if (stop || flags[2] > 0 || (cfg.checkpoint_every_steps > 0 && p.step % cfg.checkpoint_every_steps == 0)) {
        checkpoint_run(fmt::format("epoch {} step {}/{}{}", epoch + 1, p.step, steps, stop ? ", stopping" : ""));
        if (stop) throw Interrupted(flags[0] > 0 ? SIGTERM : SIGINT);
      }
      if (seconds_since(last_progress) > 30) {
        last_progress = Clock::now();
        spdlog::info("[train]{} epoch {}/{}: step {}/{} ({:.0f} instances/s on rank 0)", fold_text, epoch + 1,
                     cfg.epochs, step + 1, steps, instances / seconds_since(epoch_start));
      }
    }
    // The epoch's loss over every bag of every rank, summed in slot order: the same number, to the bit,
    // whatever the split of slots between ranks and accumulation, and across a restart.
    const torch::Tensor stats = gather_rows(job.comm, bag_stats, 2, steps * bags_per_step,
                                            [&](int q) { return slots_of_rank(q, steps, per_rank, bags_per_step); });
    double loss_sum = 0;
    double trained_instances = 0;
    const auto stats_a = stats.accessor<double, 2>();
    for (int64_t i = 0; i < stats.size(0); ++i) {
      loss_sum += stats_a[i][0];
      if (i >= first_step * bags_per_step) trained_instances += stats_a[i][1];
    }
    const double train_seconds = seconds_since(epoch_start);

    EpochRecord rec;
    rec.fold = fold;
    rec.epoch = epoch + 1;
    rec.train_loss = loss_sum / static_cast<double>(stats.size(0));
    rec.lr = lr;
    rec.instances_per_second = trained_instances / std::max(train_seconds, 1e-9);
    double score = 0;  // without a validation set every epoch "improves": the last one is kept
    std::vector<double> thresholds = model.thresholds;
    EvalResult r;
    if (!val.bags.empty()) {
      // Thresholds are fitted on the validation set, as the reference does (so its accuracy is optimistic).
      spdlog::debug("[val]{} epoch {}: scoring {} slides", fold_text, epoch + 1, val.bags.size());
      r = evaluate_bags(model, val, cfg.features_key, cfg.prefetch, job.device, {}, job.comm, job.cache);
      rec.val_loss = r.loss;
      rec.val_auc = r.metrics.auc;
      rec.val_accuracy = r.metrics.accuracy;
      score = r.metrics.score();
      thresholds = r.metrics.thresholds;
    }
    rec.seconds = seconds_since(epoch_start);

    // Every rank holds the same gathered scores, so every rank takes the same decisions below.
    const bool improved = val.bags.empty() || score > p.best_score;
    if (improved) {
      p.best_score = score;
      p.best_weights = state_dict_of(*model.net);
      p.best_thresholds = thresholds;
      p.best_epoch = epoch + 1;
      *best_val = std::move(r);
      p.epochs_without_improvement = 0;
    } else {
      ++p.epochs_without_improvement;
    }

    if (loader.cached_bags() > 0 && !job.cache_logged) {
      job.cache_logged = true;
      spdlog::info("[data] RAM cache: {} bags, {:.1f} MB ({})", loader.cached_bags(), loader.cache_bytes() / 1e6,
                   cfg.cache == "ram" ? "float16" : "float32");
    }
    report_epoch(job, rec, fold_text, improved);

    p.epoch = epoch + 1;
    p.step = 0;
    if (p.epochs_without_improvement > cfg.stop_epochs) {
      spdlog::info("[train]{} early stop: no improvement for {} epochs; best epoch {}", fold_text,
                   p.epochs_without_improvement, p.best_epoch);
      job.total_epochs_planned -= cfg.epochs - p.epoch;
      break;
    }
    if (p.epoch < cfg.epochs) {  // the end of the fold is checkpointed by the caller, with the final model
      bag_stats.clear();
      checkpoint_run(fmt::format("end of epoch {}", epoch + 1));
      stop_if_asked(job);
    }
  }
  load_state_dict(*model.net, p.best_weights, "best epoch");
  model.net->eval();
  model.thresholds = p.best_thresholds;
  model.info = {{"fold", fold}, {"best_epoch", p.best_epoch}, {"best_score", number_or_null(p.best_score)}};
  return model;
}

// The newest usable checkpoint of this job, read by rank 0 and sent to every rank (the others may not see
// its directory), decoded and checked against the job's identity; nullopt to start afresh.
std::optional<JobProgress> load_progress(Job& job) {
  const TrainConfig& cfg = job.cfg;
  std::optional<Checkpoint> ckpt;
  if (job.comm.is_main()) {
    job.store.emplace(cfg.checkpoint_dir, cfg.keep_checkpoints);
    const size_t existing = job.store->list().size();
    if (!cfg.no_resume) ckpt = job.store->load_latest();
    if (!ckpt && existing > 0) {
      spdlog::warn("[ckpt] {} ({}): starting afresh; the {} checkpoint(s) there will be superseded by this run's",
                   cfg.checkpoint_dir, cfg.no_resume ? "--no-resume" : "none is usable", existing);
    }
    // New checkpoints are numbered after every existing one, so they are the newest.
    job.sequence = job.store->newest_step().value_or(0);
  }
  if (job.comm.allreduce_max(ckpt ? 1 : 0) == 0) return std::nullopt;
  std::string names;
  if (ckpt) {
    for (const auto& [name, bytes] : ckpt->files) names += name + "\n";
  } else {
    ckpt.emplace();
  }
  job.comm.broadcast_bytes(ckpt->path, 0);
  job.comm.broadcast_bytes(names, 0);
  std::istringstream lines(names);
  for (std::string name; std::getline(lines, name);) job.comm.broadcast_bytes(ckpt->files[name], 0);
  return decode_checkpoint(*ckpt, job.identity);
}

void write_predictions(std::ofstream& out, const EvalResult& r, const ClassMap& classes,
                       const std::vector<std::vector<int>>& predicted, const std::string& set, int fold) {
  for (size_t i = 0; i < r.slide_ids.size(); ++i) {
    out << r.slide_ids[i] << "," << set << "," << fold;
    for (double p : r.probs[i]) out << "," << fmt::format("{:.6f}", p);
    std::vector<float> pred(predicted[i].begin(), predicted[i].end());
    out << "," << classes.name_of(pred);
    if (!r.targets.empty()) {
      std::vector<float> truth(r.targets[i].begin(), r.targets[i].end());
      out << "," << classes.name_of(truth);
    } else {
      out << ",";
    }
    out << "\n";
  }
}

}  // namespace

VoteResult combine_votes(const std::vector<EvalResult>& per_model, const std::vector<TrainedModel>& models) {
  if (per_model.empty() || per_model.size() != models.size()) throw Error("combine_votes: one result per model");
  VoteResult v;
  v.mean = per_model[0];
  std::vector<std::vector<std::vector<int>>> votes;
  for (size_t m = 0; m < models.size(); ++m) {
    votes.push_back(predict_labels(per_model[m].probs, models[m].thresholds));
    if (m == 0) continue;
    for (size_t b = 0; b < v.mean.probs.size(); ++b) {
      for (size_t c = 0; c < v.mean.probs[b].size(); ++c) v.mean.probs[b][c] += per_model[m].probs[b][c];
    }
  }
  for (auto& row : v.mean.probs) {
    for (double& p : row) p /= static_cast<double>(models.size());
  }
  v.voted = majority_vote(votes);
  if (!v.mean.targets.empty()) {
    // Thresholds of 0.5 on the 0/1 votes reproduce them exactly; AUC needs scores: the mean probabilities.
    std::vector<std::vector<double>> vote_scores;
    for (const auto& row : v.voted) vote_scores.emplace_back(row.begin(), row.end());
    v.metrics =
        evaluate(vote_scores, v.mean.targets, std::vector<double>(v.voted.empty() ? 0 : v.voted[0].size(), 0.5));
    v.metrics.auc = evaluate(v.mean.probs, v.mean.targets, {}).auc;
    v.metrics.thresholds.clear();  // each model's own are stored with it
  }
  return v;
}

nlohmann::json metrics_to_json(const EvalMetrics& m) {
  nlohmann::json aucs = nlohmann::json::array();
  for (double a : m.auc) aucs.push_back(number_or_null(a));
  return {{"auc", aucs},
          {"mean_auc", number_or_null(m.mean_auc())},
          {"accuracy", m.accuracy},
          {"balanced_accuracy", number_or_null(m.balanced_accuracy)},
          {"hamming_loss", m.hamming_loss},
          {"thresholds", m.thresholds}};
}

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

torch::Device resolve_device(const std::string& spec, int local_rank) {
  if (spec == "cpu") return torch::kCPU;
  const bool cuda = torch::cuda::is_available();
  if (spec == "auto")
    return cuda ? torch::Device(torch::kCUDA, local_rank % std::max<int>(1, torch::cuda::device_count())) : torch::kCPU;
  if (!cuda) throw Error("", "--device", "'" + spec + "' asked for, but CUDA is not available in this build/machine");
  if (spec == "cuda") return torch::Device(torch::kCUDA, local_rank % static_cast<int>(torch::cuda::device_count()));
  return torch::Device(spec);
}

EvalResult evaluate_bags(TrainedModel& model, const BagIndex& index, const std::string& features_key, int prefetch,
                         const torch::Device& device, const std::vector<double>& thresholds, Communicator& comm,
                         std::shared_ptr<BagCache> cache) {
  torch::NoGradGuard no_grad;
  model.net->eval();
  const int64_t n = static_cast<int64_t>(index.bags.size());
  const int world = comm.world_size();
  const auto positions_of = [&](int rank) {
    std::vector<int64_t> positions;
    for (int64_t i = rank; i < n; i += world) positions.push_back(i);
    return positions;
  };
  const bool labelled = n > 0 && !index.bags[0].target.empty();
  const int64_t num_classes = model.net->config().num_classes;

  // This rank's share: (per-class probabilities..., loss) per bag.
  std::vector<double> rows;
  BagLoader loader(index, {features_key, prefetch, CacheMode::kNone, false}, std::move(cache));
  const std::vector<int64_t> mine = positions_of(comm.rank());
  loader.start(mine);
  for (size_t i = 0; i < mine.size(); ++i) {
    const Bag bag = loader.next();
    const DsmilOutput out = model.net->forward(model.prepare(bag.features, device));
    const std::vector<double> probs = model.probabilities(out);
    rows.insert(rows.end(), probs.begin(), probs.end());
    const BagInfo& info = index.bags[static_cast<size_t>(bag.index)];
    rows.push_back(labelled ? dsmil_loss(out, target_tensor(info).to(device)).item<double>() : 0.0);
  }
  const torch::Tensor all = gather_rows(comm, rows, num_classes + 1, n, positions_of);

  EvalResult r;
  const auto all_a = all.accessor<double, 2>();
  double loss_sum = 0;
  for (int64_t i = 0; i < n; ++i) {
    const BagInfo& info = index.bags[static_cast<size_t>(i)];
    r.slide_ids.push_back(info.slide_id);
    std::vector<double> probs(static_cast<size_t>(num_classes));
    for (int64_t c = 0; c < num_classes; ++c) probs[static_cast<size_t>(c)] = all_a[i][c];
    r.probs.push_back(std::move(probs));
    if (labelled) {
      loss_sum += all_a[i][num_classes];
      r.targets.emplace_back(info.target.begin(), info.target.end());
    }
  }
  if (labelled) {
    r.loss = loss_sum / static_cast<double>(n);
    r.metrics = evaluate(r.probs, r.targets, thresholds);
  }
  return r;
}

void run_training(const TrainConfig& cfg, Communicator& comm) {
  Job job(cfg, comm, resolve_device(cfg.device, comm.local_rank()));
  job.cache = make_bag_cache(parse_cache_mode(cfg.cache), cfg.cache_budget);
  spdlog::info("[train] device {}, {} libtorch thread(s); {} rank(s) x {} bag(s) = {} bag(s) per optimiser step",
               job.device.str(), torch::get_num_threads(), comm.world_size(), cfg.accumulate,
               comm.world_size() * cfg.accumulate);

  // Data.
  const LabelTable train_labels = read_label_csv(cfg.labels);
  job.classes = ClassMap::infer(train_labels.labels, cfg.num_classes, cfg.negative_label, cfg.labels);
  IndexOptions index_opts;
  index_opts.features_key = cfg.features_key;
  index_opts.skip_bad_slides = cfg.on_bad_slide == "skip";
  const Clock::time_point t0 = Clock::now();
  const BagIndex train_all = index_channel(cfg.train_dir, &train_labels, &job.classes, index_opts);
  spdlog::info("[data] {}: {} slides, {} instances, D = {}, {} class(es) ({}), indexed in {:.1f}s", cfg.train_dir,
               train_all.bags.size(), train_all.total_instances(), train_all.feature_dim, job.classes.num_classes(),
               fmt::join(job.classes.class_names(), ", "), seconds_since(t0));
  auto index_extra = [&](const std::string& dir, const std::string& labels_path) {
    const LabelTable labels = read_label_csv(labels_path);
    BagIndex idx = index_channel(dir, &labels, &job.classes, index_opts);
    if (idx.feature_dim != train_all.feature_dim) {
      throw Error(dir, "",
                  "D = " + std::to_string(idx.feature_dim) +
                      ", but the training channel has D = " + std::to_string(train_all.feature_dim));
    }
    return idx;
  };
  const BagIndex val_channel =
      cfg.validation_dir.empty() ? BagIndex{} : index_extra(cfg.validation_dir, cfg.validation_labels);
  BagIndex test_set = cfg.test_dir.empty() ? BagIndex{} : index_extra(cfg.test_dir, cfg.test_labels);

  // Splits: one (train, val) pair per model to train.
  std::vector<std::pair<BagIndex, BagIndex>> runs;
  std::vector<int>& run_folds = job.run_folds;
  const std::vector<int> strata = strata_of(train_all, job.classes);
  if (!cfg.validation_dir.empty()) {
    runs.emplace_back(train_all, val_channel);
    run_folds.push_back(0);
  } else if (!cfg.split_csv.empty()) {
    std::vector<std::string> ids;
    for (const auto& b : train_all.bags) ids.push_back(b.slide_id);
    const Split s = read_clam_split_csv(cfg.split_csv, ids);
    runs.emplace_back(subset(train_all, s.train), subset(train_all, s.val));
    run_folds.push_back(0);
    if (!s.test.empty() && test_set.bags.empty()) test_set = subset(train_all, s.test);
  } else if (cfg.folds > 0) {
    for (int f = 0; f < cfg.folds; ++f) {
      if (cfg.fold >= 0 && f != cfg.fold) continue;
      const Split s = stratified_kfold(strata, cfg.folds, f, cfg.seed);
      runs.emplace_back(subset(train_all, s.train), subset(train_all, s.val));
      run_folds.push_back(f);
    }
  } else {
    const Split s = stratified_holdout(strata, cfg.val_fraction, cfg.seed);
    runs.emplace_back(subset(train_all, s.train), subset(train_all, s.val));
    run_folds.push_back(0);
  }
  for (const auto& [tr, va] : runs) {
    if (tr.bags.empty()) throw Error(cfg.train_dir, "", "the training split is empty");
  }
  job.total_epochs_planned = cfg.epochs * static_cast<int>(runs.size());
  spdlog::info("[train] {} model(s) to train: {} training / {} validation slides{}", runs.size(),
               runs[0].first.bags.size(), runs[0].second.bags.size(),
               cfg.folds > 0 ? fmt::format(" ({}-fold cross-validation)", cfg.folds) : "");

  // Checkpoints: continue where an earlier process of this job stopped.
  std::vector<std::pair<std::string, const BagIndex*>> sets;
  for (size_t i = 0; i < runs.size(); ++i) {
    sets.emplace_back("fold " + std::to_string(run_folds[i]) + " train", &runs[i].first);
    sets.emplace_back("fold " + std::to_string(run_folds[i]) + " validation", &runs[i].second);
  }
  job.identity = {training_settings(cfg), data_digest(sets), static_cast<int64_t>(comm.world_size()) * cfg.accumulate};
  std::optional<JobProgress> progress = load_progress(job);
  if (progress) {
    const size_t finished = progress->finished.size();
    bool fits = finished <= runs.size() &&
                (!progress->current || (finished < runs.size() && progress->current->fold == run_folds[finished]));
    for (size_t i = 0; fits && i < finished; ++i) fits = progress->finished[i].fold == run_folds[i];
    if (!fits) throw Error(cfg.checkpoint_dir, "", "the newest checkpoint does not fit this job's folds");
    spdlog::info("[ckpt] resuming from checkpoint {} in {}: {} of {} model(s) finished", progress->sequence,
                 cfg.checkpoint_dir, finished, runs.size());
    job.sequence = std::max(job.sequence, progress->sequence);
    job.epoch_records = std::move(progress->epoch_records);
    job.total_epochs_planned = progress->total_epochs_planned;
    job.epochs_done = job.epochs_done_at_start = progress->epochs_done;
    for (size_t i = 0; i < finished; ++i) {
      FinishedRun& f = progress->finished[i];
      TrainedModel m = untrained_model(job, train_all.feature_dim);
      load_state_dict(*m.net, f.weights, cfg.checkpoint_dir);
      m.net->to(job.device);
      m.net->eval();
      m.thresholds = f.thresholds;
      m.feature_mean = f.feature_mean;
      m.feature_std = f.feature_std;
      m.info = f.info;
      job.models.push_back(std::move(m));
      job.val_results.push_back(restored_eval(runs[i].second, std::move(f.val_probs), f.val_loss));
    }
  }

  if (comm.is_main() && tensorboard_enabled(cfg)) {
    job.tensorboard.emplace(cfg.tensorboard_dir);
    spdlog::info("[train] TensorBoard events: {}", job.tensorboard->path());
  }

  // Train.
  for (size_t i = job.models.size(); i < runs.size(); ++i) {
    std::optional<RunProgress> resume;
    if (progress && progress->current) std::swap(resume, progress->current);
    EvalResult val_result;
    TrainedModel m = train_model(job, runs[i].first, runs[i].second, run_folds[i], &val_result, std::move(resume));
    job.models.push_back(std::move(m));
    job.val_results.push_back(std::move(val_result));
    write_checkpoint(job, nullptr, fmt::format("fold {} finished", run_folds[i]));
    stop_if_asked(job);
  }
  std::vector<TrainedModel>& models = job.models;
  const std::vector<EvalResult>& val_results = job.val_results;
  std::vector<EvalResult> test_results;  // per model
  for (auto& m : models) {
    if (test_set.bags.empty()) break;
    test_results.push_back(evaluate_bags(m, test_set, cfg.features_key, cfg.prefetch, job.device, m.thresholds, comm));
  }
  if (!comm.is_main()) return;

  // Outputs.
  std::error_code ec;
  std::filesystem::create_directories(cfg.output_dir, ec);
  if (ec) throw Error(cfg.output_dir, "", "cannot create the output directory: " + ec.message());
  nlohmann::json summary;
  size_t best = 0;
  for (size_t i = 0; i < models.size(); ++i) {
    if (models[i].info["best_score"].is_number() &&
        (!models[best].info["best_score"].is_number() ||
         models[i].info["best_score"].get<double>() > models[best].info["best_score"].get<double>())) {
      best = i;
    }
  }
  if (models.size() > 1) {
    for (size_t i = 0; i < models.size(); ++i) {
      save_trained_model(cfg.model_dir + "/fold_" + std::to_string(run_folds[i]), models[i]);
    }
    std::vector<double> accs, aucs;
    for (const auto& r : val_results) {
      accs.push_back(r.metrics.accuracy);
      aucs.push_back(r.metrics.mean_auc());
    }
    const auto [acc_mean, acc_std] = mean_std(accs);
    const auto [auc_mean, auc_std] = mean_std(aucs);
    summary["cv_accuracy_mean"] = number_or_null(acc_mean);
    summary["cv_accuracy_std"] = number_or_null(acc_std);
    summary["cv_auc_mean"] = number_or_null(auc_mean);
    summary["cv_auc_std"] = number_or_null(auc_std);
    spdlog::info("[train] cross-validation: accuracy {:.4f} +- {:.4f}, AUC {:.4f} +- {:.4f}", acc_mean, acc_std,
                 auc_mean, auc_std);
    fmt::print("[metrics] cv_accuracy_mean={:.6f} cv_accuracy_std={:.6f} cv_auc_mean={:.6f} cv_auc_std={:.6f}\n",
               acc_mean, acc_std, auc_mean, auc_std);
  }
  save_trained_model(cfg.model_dir, models[best]);  // the best model, directly loadable by dsmil_eval
  summary["best_fold"] = models[best].info["fold"];
  summary["best_epoch"] = models[best].info["best_epoch"];
  summary["best_score"] = models[best].info["best_score"];
  summary["classes"] = job.classes.to_json();
  if (!val_results[best].probs.empty()) {
    const EvalMetrics& v = val_results[best].metrics;
    summary["validation"] = metrics_to_json(v);
    fmt::print("[metrics] best_epoch={} best_validation_auc={:.6f} best_validation_accuracy={:.6f}\n",
               models[best].info["best_epoch"].get<int>(), v.mean_auc(), v.accuracy);
  }

  std::ofstream predictions(cfg.output_dir + "/predictions.csv");
  predictions << "slide_id,set,fold";
  for (const auto& name : job.classes.class_names()) predictions << ",p_" << name;
  predictions << ",predicted,label\n";
  for (size_t i = 0; i < models.size(); ++i) {
    write_predictions(predictions, val_results[i], job.classes,
                      predict_labels(val_results[i].probs, models[i].thresholds), "val", run_folds[i]);
  }

  if (!test_set.bags.empty()) {
    const VoteResult vote = combine_votes(test_results, models);
    const EvalMetrics& vote_metrics = vote.metrics;
    summary["test"] = metrics_to_json(vote_metrics);
    summary["test"]["models_voting"] = models.size();
    spdlog::info("[test] {} slides: accuracy {:.4f}, AUC {:.4f}{}", test_set.bags.size(), vote_metrics.accuracy,
                 vote_metrics.mean_auc(),
                 models.size() > 1 ? fmt::format(" (majority vote of {} models)", models.size()) : "");
    fmt::print("[metrics] test_accuracy={:.6f} test_auc={:.6f}\n", vote_metrics.accuracy, vote_metrics.mean_auc());
    write_predictions(predictions, vote.mean, job.classes, vote.voted, "test", -1);
  }
  predictions.close();
  if (!predictions) throw Error(cfg.output_dir + "/predictions.csv", "", "write failed");

  const nlohmann::json metrics = {{"epochs", job.epoch_records}, {"summary", summary}};
  io::write_file_atomically(cfg.output_dir + "/metrics.json", metrics.dump(2) + "\n");
  io::write_file_atomically(cfg.output_dir + "/config.json", to_json(cfg).dump(2) + "\n");
  spdlog::info("[train] done in {}: model in {}, metrics and predictions in {}",
               format_duration(seconds_since(job.start)), cfg.model_dir, cfg.output_dir);
}

}  // namespace mil
