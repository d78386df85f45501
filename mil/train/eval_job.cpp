#include "mil/train/eval_job.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <array>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <numeric>

#include "mil/data/bag_loader.hpp"
#include "mil/io/csv.hpp"
#include "mil/io/files.hpp"
#include "mil/io/h5_reader.hpp"
#include "mil/plot/plots.hpp"
#include "mil/train/metrics.hpp"
#include "mil/train/trained_model.hpp"
#include "mil/train/trainer.hpp"
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

}  // namespace

void run_evaluation(const EvalConfig& cfg) {
  if (cfg.models.empty()) throw Error("", "--model", "at least one model is required");
  if (cfg.test_dir.empty()) throw Error("", "--test", "a channel directory of .h5 feature files is required");
  if (!cfg.slide_dir.empty() && cfg.plots_dir.empty()) throw Error("", "--slide-dir", "needs --plots");
  if (!cfg.slide_dir.empty() && !fs::is_directory(cfg.slide_dir)) {
    throw Error(cfg.slide_dir, "--slide-dir", "not a directory");
  }
  const bool plots = !cfg.plots_dir.empty();
  const bool per_instance = cfg.attention || plots;
  const torch::Device device = resolve_device(cfg.device, 0);

  std::vector<TrainedModel> models;
  for (const auto& path : cfg.models) {
    models.push_back(load_trained_model(path, cfg.pth_value_relu));
    models.back().net->to(device);
    if (models.back().classes.class_names() != models[0].classes.class_names()) {
      throw Error(path, "", "its classes differ from those of " + cfg.models[0] + ": models cannot vote together");
    }
  }
  const ClassMap& classes = models[0].classes;

  std::string labels_path = cfg.labels;
  if (labels_path.empty() && fs::is_regular_file(cfg.test_dir + "/labels.csv"))
    labels_path = cfg.test_dir + "/labels.csv";
  LabelTable labels;
  if (!labels_path.empty()) labels = read_label_csv(labels_path);
  IndexOptions index_opts;
  index_opts.features_key = cfg.features_key;
  index_opts.skip_bad_slides = cfg.on_bad_slide == "skip";
  const BagIndex index = index_channel(cfg.test_dir, labels_path.empty() ? nullptr : &labels,
                                       labels_path.empty() ? nullptr : &classes, index_opts);
  const int64_t model_dim = models[0].net->config().feature_dim;
  if (index.feature_dim != model_dim) {
    throw Error(cfg.test_dir, "",
                "features have D = " + std::to_string(index.feature_dim) +
                    ", the model expects D = " + std::to_string(model_dim));
  }
  spdlog::info("[eval] {} slides, {} model(s){}", index.bags.size(), models.size(),
               labels_path.empty() ? ", no labels" : ", labels from " + labels_path);

  std::error_code ec;
  fs::create_directories(cfg.out_dir + (cfg.attention ? "/attention" : ""), ec);
  if (ec) throw Error(cfg.out_dir, "", "cannot create the output directory: " + ec.message());
  if (plots) {
    fs::create_directories(cfg.plots_dir + "/heatmaps", ec);
    if (ec) throw Error(cfg.plots_dir, "", "cannot create the plots directory: " + ec.message());
  }

  torch::NoGradGuard no_grad;
  BagLoader loader(index, {cfg.features_key, cfg.prefetch, CacheMode::kNone, per_instance});
  std::vector<int64_t> order(index.bags.size());
  std::iota(order.begin(), order.end(), 0);
  loader.start(order);

  std::vector<EvalResult> per_model(models.size());
  int64_t heatmaps = 0;
  for (size_t i = 0; i < order.size(); ++i) {
    const Bag bag = loader.next();
    const BagInfo& info = index.bags[static_cast<size_t>(bag.index)];
    torch::Tensor attention, instance_scores;
    std::vector<double> mean_probs;
    for (size_t m = 0; m < models.size(); ++m) {
      const DsmilOutput out = models[m].net->forward(models[m].prepare(bag.features, device));
      per_model[m].slide_ids.push_back(info.slide_id);
      per_model[m].probs.push_back(models[m].probabilities(out));
      if (!info.target.empty()) per_model[m].targets.emplace_back(info.target.begin(), info.target.end());
      const std::vector<double>& p = per_model[m].probs.back();
      mean_probs.resize(p.size());
      for (size_t c = 0; c < p.size(); ++c) mean_probs[c] += p[c] / static_cast<double>(models.size());
      if (per_instance) {
        const torch::Tensor a = out.attention.cpu() / static_cast<double>(models.size());
        const torch::Tensor s = torch::sigmoid(out.instance_logits).cpu() / static_cast<double>(models.size());
        attention = attention.defined() ? attention + a : a;
        instance_scores = instance_scores.defined() ? instance_scores + s : s;
      }
    }
    if (cfg.attention) {
      io::H5Writer file(cfg.out_dir + "/attention/" + info.slide_id + ".h5");
      file.write("attention", attention);              // [N, C], softmax over instances per class
      file.write("instance_scores", instance_scores);  // [N, C], sigmoid of the instance classifier
      if (bag.coords.defined()) file.write("coords", bag.coords);
      file.write_string_attribute("class_names", nlohmann::json(classes.class_names()).dump());
    }
    if (plots && bag.coords.defined() && bag.coords.numel() > 0) {
      // One heatmap per slide: the attention of its most probable class (the only one when binary).
      const auto c = std::max_element(mean_probs.begin(), mean_probs.end()) - mean_probs.begin();
      const std::string& name = classes.class_names()[static_cast<size_t>(c)];
      write_slide_heatmap(cfg, info, bag.coords, attention.select(1, c), info.slide_id + "  attention, class " + name);
      ++heatmaps;
    } else if (plots) {
      spdlog::debug("[plot] {}: no coords, no heatmap", info.slide_id);
    }
    if ((i + 1) % 100 == 0) spdlog::info("[eval] {}/{} slides", i + 1, order.size());
  }

  const VoteResult vote = combine_votes(per_model, models);
  const bool labelled = !vote.mean.targets.empty();
  std::ofstream csv(cfg.out_dir + "/predictions.csv");
  csv << "slide_id";
  for (const auto& name : classes.class_names()) csv << "," << io::csv_field("p_" + name);
  csv << ",predicted" << (labelled ? ",label" : "") << "\n";
  for (size_t i = 0; i < order.size(); ++i) {
    csv << io::csv_field(index.bags[i].slide_id);
    for (double p : vote.mean.probs[i]) csv << "," << fmt::format("{:.6f}", p);
    csv << "," << io::csv_field(classes.name_of(std::vector<float>(vote.voted[i].begin(), vote.voted[i].end())));
    if (labelled) csv << "," << io::csv_field(index.bags[i].label);
    csv << "\n";
  }
  csv.close();
  if (!csv) throw Error(cfg.out_dir + "/predictions.csv", "", "write failed");

  if (labelled) {
    const EvalMetrics& m = vote.metrics;
    nlohmann::json j = metrics_to_json(m);
    j["slides"] = order.size();
    j["models"] = cfg.models;
    io::write_file_atomically(cfg.out_dir + "/metrics.json", j.dump(2) + "\n");
    spdlog::info("[eval] accuracy {:.4f}, AUC {:.4f}", m.accuracy, m.mean_auc());
    fmt::print("[metrics] test_accuracy={:.6f} test_auc={:.6f}\n", m.accuracy, m.mean_auc());
  }
  if (plots) {
    if (labelled) write_roc_png(cfg.plots_dir + "/roc.png", vote.mean.probs, vote.mean.targets, classes.class_names());
    spdlog::info("[eval] plots in {}: {}{} heatmaps ({} slides without coords)", cfg.plots_dir,
                 labelled ? "roc.png, " : "no labels so no ROC, ", heatmaps,
                 static_cast<int64_t>(order.size()) - heatmaps);
  }
  spdlog::info("[eval] predictions in {}/predictions.csv", cfg.out_dir);
}

}  // namespace mil
