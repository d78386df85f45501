#include "mil/eval/eval_job.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <array>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <numeric>

#include "mil/data/bag_loader.hpp"
#include "mil/eval/evaluation.hpp"
#include "mil/eval/predictions.hpp"
#include "mil/io/files.hpp"
#include "mil/io/h5_reader.hpp"
#include "mil/model/trained_model.hpp"
#include "mil/plot/plots.hpp"
#include "mil/util/device.hpp"
#include "mil/util/error.hpp"

namespace mil {
namespace fs = std::filesystem;
namespace {

// One class's attention over a slide's patches as plots_dir/heatmaps/<slide>.png, over the slide's thumbnail
// when --slide-dir holds it.
void write_slide_heatmap(const EvalConfig& cfg, const BagInfo& info, const torch::Tensor& coords,
                         const torch::Tensor& attention, const std::string& title) {
  if (coords.dim() != 2 || coords.size(1) != 2 || coords.size(0) != attention.size(0)) {
    throw Error(info.path, "coords",
                fmt::format("shape {} does not match [{}, 2]", c10::str(coords.sizes()), attention.size(0)));
  }
  const torch::Tensor c = coords.to(torch::kInt64).contiguous();
  const torch::Tensor a = attention.to(torch::kFloat64).contiguous();
  std::vector<std::array<int64_t, 2>> xy(static_cast<size_t>(c.size(0)));
  std::memcpy(xy.data(), c.data_ptr<int64_t>(), xy.size() * sizeof(xy[0]));
  const std::vector<double> scores(a.data_ptr<double>(), a.data_ptr<double>() + a.numel());
  HeatmapOptions options;
  options.title = title;
  if (!cfg.slide_dir.empty()) {
    options.slide_path = find_slide_file(cfg.slide_dir, info.slide_id);
    if (options.slide_path.empty()) spdlog::debug("[plot] no slide file for {} in {}", info.slide_id, cfg.slide_dir);
  }
  write_heatmap_png(cfg.plots_dir + "/heatmaps/" + info.slide_id + ".png", xy, scores, options);
}

std::vector<TrainedModel> load_models(const EvalConfig& cfg, const torch::Device& device) {
  std::vector<TrainedModel> models;
  for (const auto& path : cfg.models) {
    models.push_back(load_trained_model(path, cfg.pth_value_relu));
    models.back().net->to(device);
    if (models.back().classes.class_names() != models[0].classes.class_names()) {
      throw Error(path, "", "its classes differ from those of " + cfg.models[0] + ": models cannot vote together");
    }
  }
  return models;
}

// The channel to score, with its labels when it has them (--labels, else <test>/labels.csv when present).
BagIndex index_test_channel(const EvalConfig& cfg, const TrainedModel& model) {
  std::string labels_path = cfg.labels;
  if (labels_path.empty() && fs::is_regular_file(cfg.test_dir + "/labels.csv"))
    labels_path = cfg.test_dir + "/labels.csv";
  LabelTable labels;
  if (!labels_path.empty()) labels = read_label_csv(labels_path);
  IndexOptions index_opts;
  index_opts.features_key = cfg.features_key;
  index_opts.skip_bad_slides = cfg.on_bad_slide == "skip";
  BagIndex index = index_channel(cfg.test_dir, labels_path.empty() ? nullptr : &labels,
                                 labels_path.empty() ? nullptr : &model.classes, index_opts);
  const int64_t model_dim = model.net->config().feature_dim;
  if (index.feature_dim != model_dim) {
    throw Error(cfg.test_dir, "",
                "features have D = " + std::to_string(index.feature_dim) +
                    ", the model expects D = " + std::to_string(model_dim));
  }
  spdlog::info("[eval] {} slides, {} model(s){}", index.bags.size(), cfg.models.size(),
               labels_path.empty() ? ", no labels" : ", labels from " + labels_path);
  return index;
}

// Every model's scores of every slide, streaming: per-instance outputs (attention files, heatmaps) are
// written slide by slide and not kept.
class SlideScorer {
 public:
  SlideScorer(const EvalConfig& cfg, std::vector<TrainedModel>& models, const torch::Device& device)
      : cfg_(cfg), models_(models), device_(device), per_model_(models.size()) {}

  void score(const Bag& bag, const BagInfo& info);
  std::vector<EvalResult>& per_model() { return per_model_; }
  int64_t heatmaps() const { return heatmaps_; }

 private:
  void write_attention(const Bag& bag, const BagInfo& info, const torch::Tensor& attention,
                       const torch::Tensor& instance_scores) const;

  const EvalConfig& cfg_;
  std::vector<TrainedModel>& models_;
  torch::Device device_;
  std::vector<EvalResult> per_model_;
  int64_t heatmaps_ = 0;
};

void SlideScorer::score(const Bag& bag, const BagInfo& info) {
  const bool plots = !cfg_.plots_dir.empty();
  const bool per_instance = cfg_.attention || plots;
  const double n_models = static_cast<double>(models_.size());
  torch::Tensor attention, instance_scores;  // means over the models
  std::vector<double> mean_probs;
  for (size_t m = 0; m < models_.size(); ++m) {
    const DsmilOutput out = models_[m].net->forward(models_[m].prepare(bag.features, device_));
    per_model_[m].slide_ids.push_back(info.slide_id);
    per_model_[m].probs.push_back(models_[m].probabilities(out));
    if (!info.target.empty()) per_model_[m].targets.emplace_back(info.target.begin(), info.target.end());
    const std::vector<double>& p = per_model_[m].probs.back();
    mean_probs.resize(p.size());
    for (size_t c = 0; c < p.size(); ++c) mean_probs[c] += p[c] / n_models;
    if (per_instance) {
      const torch::Tensor a = out.attention.cpu() / n_models;
      const torch::Tensor s = torch::sigmoid(out.instance_logits).cpu() / n_models;
      attention = attention.defined() ? attention + a : a;
      instance_scores = instance_scores.defined() ? instance_scores + s : s;
    }
  }
  if (cfg_.attention) write_attention(bag, info, attention, instance_scores);
  if (plots && bag.coords.defined() && bag.coords.numel() > 0) {
    // One heatmap per slide: the attention of its most probable class (the only one when binary).
    const auto c = std::max_element(mean_probs.begin(), mean_probs.end()) - mean_probs.begin();
    const std::string& name = models_[0].classes.class_names()[static_cast<size_t>(c)];
    write_slide_heatmap(cfg_, info, bag.coords, attention.select(1, c), info.slide_id + "  attention, class " + name);
    ++heatmaps_;
  } else if (plots) {
    spdlog::debug("[plot] {}: no coords, no heatmap", info.slide_id);
  }
}

void SlideScorer::write_attention(const Bag& bag, const BagInfo& info, const torch::Tensor& attention,
                                  const torch::Tensor& instance_scores) const {
  io::H5Writer file(cfg_.out_dir + "/attention/" + info.slide_id + ".h5");
  file.write("attention", attention);              // [N, C], softmax over instances per class
  file.write("instance_scores", instance_scores);  // [N, C], sigmoid of the instance classifier
  if (bag.coords.defined()) file.write("coords", bag.coords);
  file.write_string_attribute("class_names", nlohmann::json(models_[0].classes.class_names()).dump());
}

// predictions.csv, and with labels metrics.json, the [metrics] line and (with --plots) the ROC figure.
void write_results(const EvalConfig& cfg, const std::vector<TrainedModel>& models, const VoteResult& vote) {
  PredictionsWriter predictions(models[0].classes);
  predictions.add(vote.mean, vote.voted, "test", -1);
  predictions.write(cfg.out_dir + "/predictions.csv");
  if (vote.mean.targets.empty()) return;
  const EvalMetrics& m = vote.metrics;
  nlohmann::json j = metrics_to_json(m);
  j["slides"] = vote.mean.slide_ids.size();
  j["models"] = cfg.models;
  io::write_file_atomically(cfg.out_dir + "/metrics.json", j.dump(2) + "\n");
  spdlog::info("[eval] accuracy {:.4f}, AUC {:.4f}", m.accuracy, m.mean_auc());
  fmt::print("[metrics] test_accuracy={:.6f} test_auc={:.6f}\n", m.accuracy, m.mean_auc());
  if (!cfg.plots_dir.empty()) {
    write_roc_png(cfg.plots_dir + "/roc.png", vote.mean.probs, vote.mean.targets, models[0].classes.class_names());
  }
}

}  // namespace

void run_evaluation(const EvalConfig& cfg) {
  if (!cfg.slide_dir.empty() && !fs::is_directory(cfg.slide_dir)) {
    throw Error(cfg.slide_dir, "--slide-dir", "not a directory");
  }
  const torch::Device device = resolve_device(cfg.device, 0);
  std::vector<TrainedModel> models = load_models(cfg, device);
  const BagIndex index = index_test_channel(cfg, models[0]);
  io::ensure_dir(cfg.out_dir + (cfg.attention ? "/attention" : ""), "the output directory");
  if (!cfg.plots_dir.empty()) io::ensure_dir(cfg.plots_dir + "/heatmaps", "the plots directory");

  torch::NoGradGuard no_grad;
  const bool per_instance = cfg.attention || !cfg.plots_dir.empty();
  BagLoader loader(index, {cfg.features_key, cfg.prefetch, CacheMode::kNone, per_instance});
  std::vector<int64_t> order(index.bags.size());
  std::iota(order.begin(), order.end(), 0);
  loader.start(order);
  SlideScorer scorer(cfg, models, device);
  for (size_t i = 0; i < order.size(); ++i) {
    const Bag bag = loader.next();
    scorer.score(bag, index.bags[static_cast<size_t>(bag.index)]);
    if ((i + 1) % 100 == 0) spdlog::info("[eval] {}/{} slides", i + 1, order.size());
  }

  const VoteResult vote = combine_votes(scorer.per_model(), models);
  write_results(cfg, models, vote);
  if (!cfg.plots_dir.empty()) {
    const bool labelled = !vote.mean.targets.empty();
    spdlog::info("[eval] plots in {}: {}{} heatmaps ({} slides without coords)", cfg.plots_dir,
                 labelled ? "roc.png, " : "no labels so no ROC, ", scorer.heatmaps(),
                 static_cast<int64_t>(order.size()) - scorer.heatmaps());
  }
  spdlog::info("[eval] predictions in {}/predictions.csv", cfg.out_dir);
}

}  // namespace mil
