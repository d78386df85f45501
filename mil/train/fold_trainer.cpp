#include "mil/train/fold_trainer.hpp"

#include <ATen/CPUGeneratorImpl.h>
#include <spdlog/spdlog.h>

#include <cmath>
#include <memory>
#include <mutex>

#include "mil/data/bag_loader.hpp"
#include "mil/data/feature_statistics.hpp"
#include "mil/data/sampler.hpp"
#include "mil/dist/gather.hpp"
#include "mil/dist/parameter_sync.hpp"
#include "mil/model/loss.hpp"
#include "mil/model/state_dict.hpp"
#include "mil/train/divergence_guard.hpp"
#include "mil/train/model_state.hpp"
#include "mil/train/optimizer.hpp"
#include "mil/train/scheduler.hpp"
#include "mil/train/train_step.hpp"
#include "mil/util/json.hpp"
#include "mil/util/random.hpp"
#include "mil/util/stop_signal.hpp"

namespace mil {
namespace {

// Slot numbers of rank q's bags in the first `steps_done` steps of an epoch, in the order it trains them.
std::vector<int64_t> slots_of_rank(int q, int64_t steps_done, int per_rank, int64_t bags_per_step) {
  std::vector<int64_t> slots;
  for (int64_t step = 0; step < steps_done; ++step) {
    for (int k = 0; k < per_rank; ++k) slots.push_back(step * bags_per_step + q * per_rank + k);
  }
  return slots;
}

// One fold's training state and its steps. A step trains one bag per sampler slot: world_size * accumulate
// * bags_per_step slots, rank r taking the per_rank_ = accumulate * bags_per_step slots from r * per_rank_
// (with --bags-per-step K, in packs of K consecutive slots). The plan depends only on the slot count, and
// size balancing is on whenever a step has more than one bag, so R ranks, one process with --accumulate R
// and one with --bags-per-step R train the same bags in the same steps.
class FoldRun {
 public:
  FoldRun(const FoldContext& ctx, const FoldData& data, std::optional<RunProgress> resume);
  FoldOutcome run();

 private:
  void start_afresh();
  void restore(RunProgress resume);
  void make_sampler(bool log_balance);
  void train_epoch(int epoch, EpochRecord& rec);
  // The bags a step trained on this rank, in slot order: their losses stay where the step computed them
  // (a GPU's) until record_step reads them together.
  struct StepWork {
    std::vector<StepBag> bags;  // file and, once read, loss: for the divergence guard
    std::vector<torch::Tensor> losses;
    std::vector<int64_t> trained;  // instances
  };
  StepSignals step(int epoch, int64_t step);
  std::pair<torch::Tensor, int64_t> train_bag(const Bag& bag, uint64_t bag_seed);
  void train_pack(int epoch, int64_t first_slot, StepWork& work);
  torch::Tensor training_features(const Bag& bag, uint64_t bag_seed) const;
  void note_bag(const Bag& bag, torch::Tensor loss, int64_t trained, StepWork& work) const;
  bool record_step(StepWork& work, const torch::Tensor& buffers_sum);
  EvalResult validate_epoch(int epoch, EpochRecord& rec);
  void keep_if_best(int epoch, EvalResult val, bool improved);
  void checkpoint(const std::string& moment);

  const FoldContext& ctx_;
  const TrainConfig& cfg_;
  const FoldData& data_;
  Scheduler scheduler_;
  TrainedModel model_;
  std::unique_ptr<TrainStep> train_step_;  // flat parameters, hand-written forward/backward, fused Adam
  RunProgress p_;                          // counters and best epoch; weights only while a checkpoint is written
  EvalResult best_val_;                    // validation scores of the best epoch
  int per_rank_;
  int first_slot_;
  int64_t bags_per_step_;
  std::unique_ptr<EpochSampler> sampler_;
  std::unique_ptr<BagLoader> loader_;
  uint64_t dropout_seed_;
  std::string fold_text_;
  torch::Tensor train_targets_;    // [training bags, C] on the device: no copy from the host per bag
  std::vector<double> bag_stats_;  // this rank's (loss, instances) per bag of the epoch so far, in order
  int64_t instances_ = 0;          // trained by this rank in this process's part of the epoch
  bool cache_logged_ = false;
};

FoldRun::FoldRun(const FoldContext& ctx, const FoldData& data, std::optional<RunProgress> resume)
    : ctx_(ctx),
      cfg_(ctx.cfg),
      data_(data),
      scheduler_(ctx.cfg),
      model_(untrained_model(ctx.cfg, ctx.classes, data.train.feature_dim)),
      per_rank_(ctx.cfg.accumulate * ctx.cfg.bags_per_step),
      first_slot_(ctx.comm.rank() * per_rank_),
      bags_per_step_(static_cast<int64_t>(ctx.comm.world_size()) * per_rank_),
      dropout_seed_(ctx.cfg.seed * 7919 + static_cast<uint64_t>(data.fold)),
      fold_text_(ctx.cfg.folds > 0 ? " fold " + std::to_string(data.fold + 1) + "/" + std::to_string(ctx.cfg.folds)
                                   : "") {
  model_.net->init_orthogonal(cfg_.seed + static_cast<uint64_t>(data_.fold));
  model_.net->to(ctx_.device);
  broadcast_parameters(model_.net->parameters(), ctx_.comm, 0);
  const bool resuming = resume.has_value();
  if (resuming) {
    restore(std::move(*resume));
  } else {
    start_afresh();
  }
  train_step_ = std::make_unique<TrainStep>(*model_.net, scheduler_.optimizer(), parse_precision(cfg_.precision));
  if (resuming) train_step_->load_state(p_.optimizer, cfg_.checkpoint_dir);
  p_.weights.clear();
  p_.optimizer.clear();
  make_sampler(!resuming);
  std::vector<torch::Tensor> targets;
  for (const BagInfo& b : data_.train.bags) targets.push_back(target_tensor(b, torch::kCPU));
  if (!targets.empty()) train_targets_ = torch::stack(targets).to(ctx_.device);
  loader_ = std::make_unique<BagLoader>(
      data_.train,
      LoaderOptions{cfg_.features_key, cfg_.prefetch, CacheMode::kNone, false, cfg_.precision == "bf16", ctx_.device},
      ctx_.cache);
  if (resuming) {
    spdlog::info("[ckpt]{} resuming at epoch {}/{}, step {}/{}", fold_text_, p_.epoch + 1, cfg_.epochs, p_.step,
                 sampler_->steps_per_epoch());
  }
}

void FoldRun::start_afresh() {
  p_.fold = data_.fold;
  p_.best_weights = state_dict_of(*model_.net);
  p_.best_thresholds = model_.thresholds;
  if (!cfg_.standardize) return;
  // Rank 0 reads the training split once; the other ranks take its statistics.
  if (ctx_.comm.is_main()) {
    std::tie(model_.feature_mean, model_.feature_std) =
        feature_statistics(data_.train, cfg_.features_key, cfg_.prefetch);
  } else {
    model_.feature_mean = torch::empty({data_.train.feature_dim}, torch::kFloat);
    model_.feature_std = torch::empty({data_.train.feature_dim}, torch::kFloat);
  }
  ctx_.comm.broadcast(model_.feature_mean, 0);
  ctx_.comm.broadcast(model_.feature_std, 0);
}

void FoldRun::restore(RunProgress resume) {
  p_ = std::move(resume);
  load_state_dict(*model_.net, p_.weights, cfg_.checkpoint_dir);
  model_.feature_mean = p_.feature_mean;
  model_.feature_std = p_.feature_std;
  best_val_ = restored_eval(data_.val, std::move(p_.best_val_probs), p_.best_val_loss);
}

void FoldRun::make_sampler(bool log_balance) {
  SamplerOptions opts;
  opts.seed = cfg_.seed + static_cast<uint64_t>(data_.fold);
  opts.world_size = static_cast<int>(bags_per_step_);
  opts.size_balanced = bags_per_step_ > 1;
  sampler_ = std::make_unique<EpochSampler>(data_.train.sizes(), opts);
  if (bags_per_step_ > 1 && log_balance) {
    // How long the fastest bag of a step waits for the slowest at the all-reduce (1 = never).
    SamplerOptions plain = opts;
    plain.size_balanced = false;
    spdlog::info(
        "[data] {} bags per step: straggler ratio (max / mean instances in a step) {:.3f}, {:.3f} with "
        "plain sharding",
        bags_per_step_, sampler_->straggler_ratio(0), EpochSampler(data_.train.sizes(), plain).straggler_ratio(0));
  }
}

FoldOutcome FoldRun::run() {
  while (p_.epoch < cfg_.epochs) {
    const int epoch = p_.epoch;
    const Clock::time_point epoch_start = Clock::now();
    EpochRecord rec;
    rec.fold = data_.fold;
    rec.epoch = epoch + 1;
    rec.lr = scheduler_.lr(epoch);
    train_epoch(epoch, rec);
    EvalResult val = validate_epoch(epoch, rec);
    rec.seconds = seconds_since(epoch_start);
    // Every rank holds the same gathered scores, so every rank takes the same decisions below.
    const bool improved = scheduler_.improved(!data_.val.bags.empty(), val.metrics.score(), p_);
    keep_if_best(epoch, std::move(val), improved);
    if (loader_->cached_bags() > 0 && !cache_logged_) {
      cache_logged_ = true;
      spdlog::info("[data] RAM cache: {} bags, {:.1f} MB ({})", loader_->cached_bags(), loader_->cache_bytes() / 1e6,
                   cache_mode_name(ctx_.cache->mode()));
    }
    ctx_.reporter.epoch(rec, fold_text_, improved);

    p_.epoch = epoch + 1;
    p_.step = 0;
    if (scheduler_.stop_early(p_)) {
      spdlog::info("[train]{} early stop: no improvement for {} epochs; best epoch {}", fold_text_,
                   p_.epochs_without_improvement, p_.best_epoch);
      ctx_.reporter.skip_epochs(cfg_.epochs - p_.epoch);
      break;
    }
    if (scheduler_.checkpoint_at_epoch_end(p_.epoch)) {  // the fold's end is checkpointed by the job
      bag_stats_.clear();
      checkpoint(fmt::format("end of epoch {}", epoch + 1));
      stop_if_asked(ctx_.comm);
    }
  }
  load_state_dict(*model_.net, p_.best_weights, "best epoch");
  model_.net->eval();
  model_.thresholds = p_.best_thresholds;
  model_.info = {{"fold", data_.fold}, {"best_epoch", p_.best_epoch}, {"best_score", number_or_null(p_.best_score)}};
  return {std::move(model_), std::move(best_val_)};
}

// The epoch's steps from p_.step on; fills rec's train_loss and instances_per_second.
void FoldRun::train_epoch(int epoch, EpochRecord& rec) {
  const Clock::time_point start = Clock::now();
  train_step_->set_lr(rec.lr);
  model_.net->train();
  // Mid-epoch after a restart: this rank's share of the steps already taken comes from the checkpoint.
  bag_stats_.clear();
  for (int64_t slot : slots_of_rank(ctx_.comm.rank(), p_.step, per_rank_, bags_per_step_)) {
    bag_stats_.push_back(p_.bag_stats.at(static_cast<size_t>(2 * slot)));
    bag_stats_.push_back(p_.bag_stats.at(static_cast<size_t>(2 * slot + 1)));
  }
  p_.bag_stats.clear();
  std::vector<int64_t> order = sampler_->slot_sequence(epoch, first_slot_, per_rank_);
  order.erase(order.begin(), order.begin() + p_.step * per_rank_);
  loader_->start(order);
  const int64_t first_step = p_.step;  // of this process: throughput counts only what it trained
  const int64_t steps = sampler_->steps_per_epoch();
  instances_ = 0;
  Clock::time_point last_progress = start;
  for (int64_t s = p_.step; s < steps; ++s) {
    const StepSignals agreed = step(epoch, s);
    if (agreed.stop()) throw Interrupted(agreed.signal());
    if (seconds_since(last_progress) > 30) {
      last_progress = Clock::now();
      spdlog::info("[train]{} epoch {}/{}: step {}/{} ({:.0f} instances/s on rank 0)", fold_text_, epoch + 1,
                   cfg_.epochs, s + 1, steps, static_cast<double>(instances_) / seconds_since(start));
    }
  }
  // The epoch's loss over every bag of every rank, summed in slot order: the same number, to the bit,
  // whatever the split of slots between ranks and accumulation, and across a restart.
  const torch::Tensor stats = gather_rows(ctx_.comm, bag_stats_, 2, steps * bags_per_step_,
                                          [&](int q) { return slots_of_rank(q, steps, per_rank_, bags_per_step_); });
  double loss_sum = 0;
  double trained_instances = 0;
  const auto stats_a = stats.accessor<double, 2>();
  for (int64_t i = 0; i < stats.size(0); ++i) {
    loss_sum += stats_a[i][0];
    if (i >= first_step * bags_per_step_) trained_instances += stats_a[i][1];
  }
  rec.train_loss = loss_sum / static_cast<double>(stats.size(0));
  rec.instances_per_second = trained_instances / std::max(seconds_since(start), 1e-9);
}

// One optimiser step: this rank's bags forward and backward, gradients (and step signals) all-reduced, the
// update, and a checkpoint when one is due. Returns the signals every rank agreed on.
StepSignals FoldRun::step(int epoch, int64_t step) {
  train_step_->zero_grad();
  StepWork work;
  for (int k = 0; k < per_rank_; k += cfg_.bags_per_step) {
    const int64_t slot = step * bags_per_step_ + first_slot_ + k;
    if (cfg_.bags_per_step > 1) {
      train_pack(epoch, slot, work);
      continue;
    }
    const Bag bag = loader_->next();
    auto [loss, trained] = train_bag(bag, slot_seed(dropout_seed_, epoch, slot));
    note_bag(bag, std::move(loss), trained, work);
  }
  std::vector<float> flags = scheduler_.local_signals(ctx_.comm.is_main(), ctx_.seconds_since_checkpoint()).to_flags();
  train_step_->finish(ctx_.comm, bags_per_step_, &flags);  // one all-reduce across ranks, none on one
  const StepSignals agreed = StepSignals::from_flags(flags);
  // Two sums over the flat buffers rule out a non-finite weight or gradient; the per-tensor search that
  // names one runs only when they do not (isfinite over every tensor was a tenth of a tiny bag's step).
  const bool finite = record_step(work, train_step_->buffers_sum());
  check_step_finite(model_.net->named_parameters(), work.bags,
                    {data_.fold, epoch + 1, step + 1, sampler_->steps_per_epoch()}, finite);
  p_.step = step + 1;
  if (scheduler_.checkpoint_after_step(agreed, p_.step)) {
    checkpoint(fmt::format("epoch {} step {}/{}{}", epoch + 1, p_.step, sampler_->steps_per_epoch(),
                           agreed.stop() ? ", stopping" : ""));
  }
  return agreed;
}

void FoldRun::note_bag(const Bag& bag, torch::Tensor loss, int64_t trained, StepWork& work) const {
  work.bags.push_back({data_.train.bags[static_cast<size_t>(bag.index)].path, 0.0});
  work.losses.push_back(std::move(loss));
  work.trained.push_back(trained);
}

// The step's losses into the divergence guard's list and the epoch's statistics, and whether the flat buffers'
// sum is finite (TrainStep::buffers_sum): on a GPU read together, the step's one wait for its results.
bool FoldRun::record_step(StepWork& work, const torch::Tensor& buffers_sum) {
  const bool on_host = buffers_sum.device().is_cpu();
  const torch::Tensor read =
      on_host ? torch::Tensor()
              : torch::cat({torch::stack(work.losses), buffers_sum.to(torch::kDouble).reshape({1})}).to(torch::kCPU);
  for (size_t i = 0; i < work.bags.size(); ++i) {
    const double loss = on_host ? work.losses[i].item<double>() : read.data_ptr<double>()[i];
    work.bags[i].loss = loss;
    bag_stats_.push_back(loss);
    bag_stats_.push_back(static_cast<double>(work.trained[i]));
    instances_ += work.trained[i];
  }
  return std::isfinite(on_host ? buffers_sum.item<double>() : read.data_ptr<double>()[work.bags.size()]);
}

// Forward and backward of one training bag (gradients accumulate over the rank's bags of a step), with
// patch and node dropout drawn from `bag_seed`. Returns the bag's loss and the instances it trained on.
std::pair<torch::Tensor, int64_t> FoldRun::train_bag(const Bag& bag, uint64_t bag_seed) {
  {
    // Node dropout draws from the device's default generator.
    at::Generator device_gen = at::globalContext().defaultGenerator(ctx_.device);
    std::lock_guard<std::mutex> lock(device_gen.mutex());
    device_gen.set_current_seed(mix64(bag_seed));
  }
  const torch::Tensor x = training_features(bag, bag_seed);
  return {train_step_->accumulate(x, train_targets_[bag.index]), x.size(0)};
}

// The next --bags-per-step bags of the loader, slots first_slot on, in one packed forward and backward, with
// the dropout draws each would get alone (the node dropout seed goes to the packed step, bag by bag).
void FoldRun::train_pack(int epoch, int64_t first_slot, StepWork& work) {
  std::vector<Bag> bags;
  std::vector<torch::Tensor> features, targets;
  PackedBags pack;
  pack.offsets.push_back(0);
  for (int k = 0; k < cfg_.bags_per_step; ++k) {
    const uint64_t bag_seed = slot_seed(dropout_seed_, epoch, first_slot + k);
    bags.push_back(loader_->next());
    features.push_back(training_features(bags.back(), bag_seed));
    targets.push_back(train_targets_[bags.back().index]);
    pack.offsets.push_back(pack.offsets.back() + features.back().size(0));
    pack.dropout_seeds.push_back(mix64(bag_seed));
  }
  pack.x = torch::cat(features, 0);
  pack.targets = torch::stack(targets, 0);
  const torch::Tensor losses = train_step_->accumulate_pack(pack);
  for (size_t k = 0; k < bags.size(); ++k) {
    note_bag(bags[k], losses[static_cast<int64_t>(k)], pack.offsets[k + 1] - pack.offsets[k], work);
  }
}

// A training bag's features on the device, with patch dropout drawn from `bag_seed`.
torch::Tensor FoldRun::training_features(const Bag& bag, uint64_t bag_seed) const {
  // bfloat16 features (--precision bf16) go to the step as they are, unless standardisation makes new ones.
  const bool as_is = bag.features.scalar_type() == torch::kBFloat16 && !model_.feature_mean.defined();
  torch::Tensor x = as_is ? bag.features.to(ctx_.device) : model_.prepare(bag.features, ctx_.device);
  if (cfg_.dropout_patch > 0) {
    // Patch dropout (training only): keep a random floor(N * (1 - p)) instances, at least one.
    const int64_t n = x.size(0);
    const int64_t keep = std::max<int64_t>(1, static_cast<int64_t>(std::floor(n * (1.0 - cfg_.dropout_patch))));
    at::Generator patch_gen = at::detail::createCPUGenerator(bag_seed);  // the same draws on every device
    torch::Tensor rows = torch::randperm(n, patch_gen, torch::kLong).slice(0, 0, keep);
    // To a GPU from pinned memory, asynchronously: the host does not wait for the copy.
    if (ctx_.device.is_cuda()) rows = rows.pin_memory().to(ctx_.device, torch::kLong, /*non_blocking=*/true);
    x = x.index_select(0, rows);
  }
  return x;
}

// Scores the validation set (every rank gets the gathered scores) into rec; an empty result without one.
// Thresholds are fitted on the validation set, as the reference does (so its accuracy is optimistic).
EvalResult FoldRun::validate_epoch(int epoch, EpochRecord& rec) {
  if (data_.val.bags.empty()) return {};
  spdlog::debug("[val]{} epoch {}: scoring {} slides", fold_text_, epoch + 1, data_.val.bags.size());
  EvalResult r = score_bags(model_, data_.val, cfg_.features_key, cfg_.prefetch, ctx_.device, ctx_.comm, ctx_.cache,
                            [this](const torch::Tensor& x) { return train_step_->forward(x); });
  std::vector<std::string> paths;
  for (const BagInfo& b : data_.val.bags) paths.push_back(b.path);
  const int64_t steps = sampler_->steps_per_epoch();
  check_scores_finite(r.probs, paths, {data_.fold, epoch + 1, steps, steps});
  r.metrics = evaluate(r.probs, r.targets, {});
  rec.val_loss = r.loss;
  rec.val_auc = r.metrics.auc;
  rec.val_accuracy = r.metrics.accuracy;
  return r;
}

// The epoch's bookkeeping: its weights, thresholds and scores kept when it is the best so far. Without a
// validation set every epoch is (score 0, thresholds unchanged), so the last one is kept.
void FoldRun::keep_if_best(int epoch, EvalResult val, bool improved) {
  if (!improved) {
    ++p_.epochs_without_improvement;
    return;
  }
  const bool validated = !data_.val.bags.empty();
  p_.best_score = validated ? val.metrics.score() : 0;
  p_.best_weights = state_dict_of(*model_.net);
  p_.best_thresholds = validated ? val.metrics.thresholds : model_.thresholds;
  p_.best_epoch = epoch + 1;
  best_val_ = std::move(val);
  p_.epochs_without_improvement = 0;
}

// A checkpoint of the job with this fold as it stands; inside an epoch it carries every rank's bag stats,
// in slot order.
void FoldRun::checkpoint(const std::string& moment) {
  p_.bag_stats.clear();
  if (p_.step > 0) {
    const torch::Tensor all = gather_rows(ctx_.comm, bag_stats_, 2, p_.step * bags_per_step_,
                                          [&](int q) { return slots_of_rank(q, p_.step, per_rank_, bags_per_step_); });
    p_.bag_stats.assign(all.data_ptr<double>(), all.data_ptr<double>() + all.numel());
  }
  if (ctx_.comm.is_main()) capture_run(p_, model_, train_step_->save_state(), best_val_);
  ctx_.checkpoint(p_, moment);
  release_run(p_);
}

}  // namespace

uint64_t slot_seed(uint64_t seed, int epoch, int64_t slot) {
  return mix64(mix64(mix64(seed) ^ static_cast<uint64_t>(epoch)) ^ static_cast<uint64_t>(slot));
}

FoldOutcome train_fold(const FoldContext& ctx, const FoldData& data, std::optional<RunProgress> resume) {
  return FoldRun(ctx, data, std::move(resume)).run();
}

}  // namespace mil
