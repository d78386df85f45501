#include "mil/train/trainer.hpp"

#include <ATen/CPUGeneratorImpl.h>
#include <spdlog/spdlog.h>

#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <functional>
#include <mutex>
#include <numeric>

#include "mil/data/bag_loader.hpp"
#include "mil/data/sampler.hpp"
#include "mil/data/splits.hpp"
#include "mil/dist/parameter_sync.hpp"
#include "mil/io/files.hpp"
#include "mil/model/loss.hpp"
#include "mil/model/state_dict.hpp"
#include "mil/train/optimizer.hpp"
#include "mil/util/error.hpp"

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
  const TrainConfig& cfg;
  Communicator& comm;
  torch::Device device;
  ClassMap classes;
  std::vector<nlohmann::json> epoch_records;
  Clock::time_point start = Clock::now();
  int total_epochs_planned = 0;
  int epochs_done = 0;
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

// Trains one model on `train` and selects its best epoch on `val` (when there is one).
// `best_val` receives the validation scores of the kept epoch (empty without a validation set).
TrainedModel train_model(Job& job, const BagIndex& train, const BagIndex& val, int fold, EvalResult* best_val) {
  const TrainConfig& cfg = job.cfg;
  TrainedModel model;
  ModelConfig mc;
  mc.feature_dim = train.feature_dim;
  mc.num_classes = job.classes.num_classes();
  mc.nonlinear_q = cfg.nonlinear_q;
  mc.passing_v = cfg.passing_v;
  mc.dropout_v = cfg.dropout_node;
  model.net = DsmilNet(mc);
  model.net->init_orthogonal(cfg.seed + static_cast<uint64_t>(fold));
  model.net->to(job.device);
  model.classes = job.classes;
  model.average = cfg.average;
  model.thresholds.assign(static_cast<size_t>(mc.num_classes), 0.5);
  const std::vector<torch::Tensor> params = model.net->parameters();
  broadcast_parameters(params, job.comm, 0);
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

  OptimizerConfig opt_cfg;
  opt_cfg.lr = cfg.lr;
  opt_cfg.weight_decay = cfg.weight_decay;
  opt_cfg.min_lr = cfg.min_lr;
  auto optimizer = make_adam(params, opt_cfg);

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
  if (bags_per_step > 1) {
    // How long the fastest bag of a step waits for the slowest at the all-reduce (1 = never).
    SamplerOptions plain = sampler_opts;
    plain.size_balanced = false;
    spdlog::info(
        "[data] {} bags per step: straggler ratio (max / mean instances in a step) {:.3f}, {:.3f} with "
        "plain sharding",
        bags_per_step, sampler.straggler_ratio(0), EpochSampler(train.sizes(), plain).straggler_ratio(0));
  }
  BagLoader loader(train, {cfg.features_key, cfg.prefetch, parse_cache_mode(cfg.cache), false});
  const uint64_t dropout_seed = cfg.seed * 7919 + static_cast<uint64_t>(fold);

  double best_score = -std::numeric_limits<double>::infinity();
  StateDict best_state = state_dict_of(*model.net);
  std::vector<double> best_thresholds = model.thresholds;
  int best_epoch = 0;
  int epochs_without_improvement = 0;
  const std::string fold_text =
      cfg.folds > 0 ? " fold " + std::to_string(fold + 1) + "/" + std::to_string(cfg.folds) : "";

  for (int epoch = 0; epoch < cfg.epochs; ++epoch) {
    const Clock::time_point epoch_start = Clock::now();
    const double lr = cosine_lr(opt_cfg, epoch, cfg.epochs);
    set_lr(*optimizer, lr);
    model.net->train();
    loader.start(sampler.slot_sequence(epoch, first_slot, per_rank));
    std::vector<double> bag_stats;  // (loss, instances) per bag, in the order trained
    int64_t instances = 0;
    Clock::time_point last_progress = Clock::now();
    for (int64_t step = 0; step < steps; ++step) {
      optimizer->zero_grad();
      for (int k = 0; k < per_rank; ++k) {
        const Bag bag = loader.next();
        const uint64_t bag_seed = slot_seed(dropout_seed, epoch, step * bags_per_step + first_slot + k);
        {
          // Node dropout draws from the device's default generator.
          at::Generator device_gen = at::globalContext().defaultGenerator(job.device);
          std::lock_guard<std::mutex> lock(device_gen.mutex());
          device_gen.set_current_seed(mix64(bag_seed));
        }
        torch::Tensor x = model.prepare(bag.features, job.device);
        if (cfg.dropout_patch > 0) {
          // Patch dropout (training only): keep a random floor(N * (1 - p)) instances, at least one.
          const int64_t n = x.size(0);
          const int64_t keep = std::max<int64_t>(1, static_cast<int64_t>(std::floor(n * (1.0 - cfg.dropout_patch))));
          at::Generator patch_gen = at::detail::createCPUGenerator(bag_seed);
          x = x.index_select(0, torch::randperm(n, patch_gen, torch::kLong).slice(0, 0, keep).to(job.device));
        }
        const DsmilOutput out = model.net->forward(x);
        const torch::Tensor loss =
            dsmil_loss(out, target_tensor(train.bags[static_cast<size_t>(bag.index)]).to(job.device));
        loss.backward();  // accumulates over the rank's bags of the step
        bag_stats.push_back(loss.item<double>());
        bag_stats.push_back(static_cast<double>(x.size(0)));
        instances += x.size(0);
      }
      average_gradients(params, job.comm, bags_per_step);
      optimizer->step();
      if (seconds_since(last_progress) > 30) {
        last_progress = Clock::now();
        spdlog::info("[train]{} epoch {}/{}: step {}/{} ({:.0f} instances/s on rank 0)", fold_text, epoch + 1,
                     cfg.epochs, step + 1, steps, instances / seconds_since(epoch_start));
      }
    }
    // The epoch's loss over every bag of every rank, summed in slot order: the same number, to the bit,
    // whatever the split of slots between ranks and accumulation.
    const torch::Tensor stats = gather_rows(job.comm, bag_stats, 2, steps * bags_per_step, [&](int q) {
      std::vector<int64_t> slots;
      for (int64_t step = 0; step < steps; ++step) {
        for (int k = 0; k < per_rank; ++k) slots.push_back(step * bags_per_step + q * per_rank + k);
      }
      return slots;
    });
    double loss_sum = 0;
    double total_instances = 0;
    const auto stats_a = stats.accessor<double, 2>();
    for (int64_t i = 0; i < stats.size(0); ++i) {
      loss_sum += stats_a[i][0];
      total_instances += stats_a[i][1];
    }
    const double train_seconds = seconds_since(epoch_start);

    EpochRecord rec;
    rec.fold = fold;
    rec.epoch = epoch + 1;
    rec.train_loss = loss_sum / static_cast<double>(stats.size(0));
    rec.lr = lr;
    rec.instances_per_second = total_instances / std::max(train_seconds, 1e-9);
    double score = 0;  // without a validation set every epoch "improves": the last one is kept
    std::vector<double> thresholds = model.thresholds;
    EvalResult r;
    if (!val.bags.empty()) {
      // Thresholds are fitted on the validation set, as the reference does (so its accuracy is optimistic).
      r = evaluate_bags(model, val, cfg.features_key, cfg.prefetch, job.device, {}, job.comm);
      rec.val_loss = r.loss;
      rec.val_auc = r.metrics.auc;
      rec.val_accuracy = r.metrics.accuracy;
      score = r.metrics.score();
      thresholds = r.metrics.thresholds;
    }
    rec.seconds = seconds_since(epoch_start);

    // Every rank holds the same gathered scores, so every rank takes the same decisions below.
    const bool improved = val.bags.empty() || score > best_score;
    if (improved) {
      best_score = score;
      best_state = state_dict_of(*model.net);
      best_thresholds = thresholds;
      best_epoch = epoch + 1;
      *best_val = std::move(r);
      epochs_without_improvement = 0;
    } else {
      ++epochs_without_improvement;
    }

    if (epoch == 0 && loader.cached_bags() > 0) {
      spdlog::info("[data] RAM cache: {} bags, {:.1f} MB ({})", loader.cached_bags(), loader.cache_bytes() / 1e6,
                   cfg.cache == "ram" ? "float16" : "float32");
    }
    ++job.epochs_done;
    const double elapsed = seconds_since(job.start);
    const double eta = elapsed / job.epochs_done * (job.total_epochs_planned - job.epochs_done);
    std::string auc_text;
    for (size_t c = 0; c < rec.val_auc.size(); ++c) auc_text += fmt::format(" val_auc_{}={:.6f}", c, rec.val_auc[c]);
    spdlog::info(
        "[train]{} epoch {}/{}: train_loss {:.4f}, val_loss {:.4f}, val_auc {:.4f}, val_accuracy {:.4f}, "
        "lr {:.3g}, {:.1f}s ({:.0f} instances/s){}; elapsed {}, eta {}",
        fold_text, rec.epoch, cfg.epochs, rec.train_loss, rec.val_loss, mean_std(rec.val_auc).first, rec.val_accuracy,
        lr, rec.seconds, rec.instances_per_second, improved ? ", best so far" : "", format_duration(elapsed),
        format_duration(eta));
    // The stable metric line for SageMaker metric_definitions (see README); numbers only, one per key.
    if (job.comm.is_main()) {
      fmt::print(
          "[metrics] fold={} epoch={} train_loss={:.6f} val_loss={:.6f} val_auc={:.6f} val_accuracy={:.6f} "
          "lr={:.6g} instances_per_second={:.1f}{}\n",
          fold, rec.epoch, rec.train_loss, rec.val_loss, mean_std(rec.val_auc).first, rec.val_accuracy, lr,
          rec.instances_per_second, auc_text);
      std::fflush(stdout);
    }
    job.epoch_records.push_back(rec.to_json());

    if (epochs_without_improvement > cfg.stop_epochs) {
      spdlog::info("[train]{} early stop: no improvement for {} epochs; best epoch {}", fold_text,
                   epochs_without_improvement, best_epoch);
      job.total_epochs_planned -= cfg.epochs - (epoch + 1);
      break;
    }
  }
  load_state_dict(*model.net, best_state, "best epoch");
  model.net->eval();
  model.thresholds = best_thresholds;
  model.info = {{"fold", fold}, {"best_epoch", best_epoch}, {"best_score", number_or_null(best_score)}};
  return model;
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
                         const torch::Device& device, const std::vector<double>& thresholds, Communicator& comm) {
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
  BagLoader loader(index, {features_key, prefetch, CacheMode::kNone, false});
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
  Job job{cfg, comm, resolve_device(cfg.device, comm.local_rank()), {}, {}};
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
  std::vector<int> run_folds;
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

  // Train.
  std::vector<TrainedModel> models;
  std::vector<EvalResult> val_results(runs.size());
  for (size_t i = 0; i < runs.size(); ++i) {
    models.push_back(train_model(job, runs[i].first, runs[i].second, run_folds[i], &val_results[i]));
  }
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
