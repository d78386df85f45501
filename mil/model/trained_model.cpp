#include "mil/model/trained_model.hpp"

#include <filesystem>

#include "mil/io/files.hpp"
#include "mil/model/loss.hpp"
#include "mil/model/state_dict.hpp"
#include "mil/util/error.hpp"

namespace mil {
namespace fs = std::filesystem;

namespace {

nlohmann::json tensor_to_json(const torch::Tensor& t) {
  if (!t.defined()) return nullptr;
  const torch::Tensor c = t.to(torch::kCPU, torch::kDouble).contiguous();
  return std::vector<double>(c.data_ptr<double>(), c.data_ptr<double>() + c.numel());
}

torch::Tensor tensor_from_json(const nlohmann::json& j) {
  if (j.is_null()) return {};
  return torch::tensor(j.get<std::vector<double>>(), torch::kDouble).to(torch::kFloat);
}

}  // namespace

torch::Tensor TrainedModel::prepare(const torch::Tensor& features, const torch::Device& device) const {
  torch::Tensor x = features.to(device, torch::kFloat);
  if (feature_mean.defined()) x = (x - feature_mean.to(device)) / feature_std.to(device);
  return x;
}

torch::Tensor TrainedModel::probability_tensor(const DsmilOutput& out) const {
  torch::Tensor p = torch::sigmoid(out.bag_logits.detach().view({-1}));
  if (average) p = 0.5 * (p + torch::sigmoid(std::get<0>(out.instance_logits.detach().max(0))));
  return p;
}

std::vector<double> TrainedModel::probabilities(const DsmilOutput& out) const {
  if (!out.bag_logits.device().is_cpu() || out.bag_logits.scalar_type() != torch::kFloat) {
    const torch::Tensor p = probability_tensor(out).to(torch::kCPU, torch::kDouble).contiguous();
    return std::vector<double>(p.data_ptr<double>(), p.data_ptr<double>() + p.numel());
  }
  // On the host, in double: no libtorch call per bag.
  const torch::Tensor bag = out.bag_logits.contiguous();
  const float* logits = bag.data_ptr<float>();
  std::vector<double> p(static_cast<size_t>(bag.numel()));
  for (size_t k = 0; k < p.size(); ++k) p[k] = sigmoid(logits[k]);
  if (average) {
    const std::vector<double> top = max_instance_logits(out);
    for (size_t k = 0; k < p.size(); ++k) p[k] = 0.5 * (p[k] + sigmoid(top[k]));
  }
  return p;
}

void save_trained_model(const std::string& dir, TrainedModel& model) {
  io::ensure_dir(dir, "the model directory");
  nlohmann::json meta = {{"classes", model.classes.to_json()},
                         {"thresholds", model.thresholds},
                         {"feature_mean", tensor_to_json(model.feature_mean)},
                         {"feature_std", tensor_to_json(model.feature_std)},
                         {"average", model.average},
                         {"info", model.info}};
  save_model(dir + "/model.pt", *model.net, meta);
  write_state_dict(dir + "/model.pth", state_dict_of(*model.net));
  const nlohmann::json thresholds = {{"class_names", model.classes.class_names()}, {"thresholds", model.thresholds}};
  io::write_file_atomically(dir + "/thresholds.json", thresholds.dump(2) + "\n");
}

TrainedModel load_trained_model(const std::string& path, std::optional<bool> pth_value_relu) {
  const std::string file = fs::is_directory(path) ? path + "/model.pt" : path;
  nlohmann::json meta;
  TrainedModel model;
  model.net = load_model(file, &meta, pth_value_relu);
  const int64_t c = model.net->config().num_classes;
  if (meta.contains("classes")) {
    try {
      model.classes = ClassMap::from_json(meta.at("classes"), file);
      model.thresholds = meta.at("thresholds").get<std::vector<double>>();
      model.feature_mean = tensor_from_json(meta.at("feature_mean"));
      model.feature_std = tensor_from_json(meta.at("feature_std"));
      model.average = meta.at("average").get<bool>();
      model.info = meta.value("info", nlohmann::json::object());
    } catch (const nlohmann::json::exception& e) {
      throw Error(file, "metadata", std::string("invalid model metadata: ") + e.what());
    }
    if (static_cast<int64_t>(model.thresholds.size()) != c || model.classes.num_classes() != c) {
      throw Error(file, "metadata", "class count does not match the network's " + std::to_string(c));
    }
  } else {
    // A reference .pth: numeric classes in DSMIL's convention, threshold 0.5.
    std::vector<std::string> labels;
    for (int64_t i = 0; i <= (c == 1 ? 1 : c - 1); ++i) labels.push_back(std::to_string(i));
    model.classes = ClassMap::infer(labels, c, "", file);
    model.thresholds.assign(static_cast<size_t>(c), 0.5);
  }
  return model;
}

}  // namespace mil
