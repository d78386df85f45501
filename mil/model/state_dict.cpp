#include "mil/model/state_dict.hpp"

#include <map>

#include "mil/io/torch_archive.hpp"
#include "mil/util/error.hpp"

namespace mil {
namespace {

std::string shape_text(c10::IntArrayRef sizes) {
  std::string s = "[";
  for (size_t i = 0; i < sizes.size(); ++i) s += (i ? ", " : "") + std::to_string(sizes[i]);
  return s + "]";
}

const torch::Tensor* find(const StateDict& weights, const std::string& key) {
  for (const auto& [k, t] : weights) {
    if (k == key) return &t;
  }
  return nullptr;
}

const torch::Tensor& require(const StateDict& weights, const std::string& key, int64_t dims,
                             const std::string& source) {
  const torch::Tensor* t = find(weights, key);
  if (t == nullptr) throw Error(source, key, "missing from the state dict");
  if (t->dim() != dims) {
    throw Error(source, key, "expected a " + std::to_string(dims) + "-d tensor, got shape " + shape_text(t->sizes()));
  }
  return *t;
}

StateDict state_dict_from_ivalue(const c10::IValue& value, const std::string& path) {
  if (!value.isGenericDict()) throw Error(path, "", "does not hold a dict of tensors (a state dict)");
  const auto dict = value.toGenericDict();
  // Checkpoint dicts nest the weights.
  for (const char* nested : {"state_dict", "model"}) {
    auto it = dict.find(c10::IValue(std::string(nested)));
    if (it != dict.end() && it->value().isGenericDict()) return state_dict_from_ivalue(it->value(), path);
  }
  StateDict out;
  for (const auto& item : dict) {
    if (!item.key().isString()) throw Error(path, "", "state dict has a key that is not a string");
    std::string key = item.key().toStringRef();
    if (!item.value().isTensor()) throw Error(path, key, "is not a tensor");
    if (key.rfind("module.", 0) == 0) key = key.substr(7);  // saved from nn.DataParallel
    out.emplace_back(std::move(key), item.value().toTensor());
  }
  return out;
}

c10::impl::GenericDict to_generic_dict(const StateDict& weights) {
  c10::impl::GenericDict dict(c10::StringType::get(), c10::TensorType::get());
  for (const auto& [key, t] : weights) dict.insert(key, t.detach().to(torch::kCPU).contiguous());
  return dict;
}

}  // namespace

StateDict state_dict_of(DsmilNetImpl& model) {
  StateDict out;
  for (const auto& item : model.named_parameters()) {
    out.emplace_back(item.key(), item.value().detach().to(torch::kCPU, torch::kFloat32).contiguous().clone());
  }
  return out;
}

ModelConfig infer_config(const StateDict& weights, const std::string& source) {
  ModelConfig cfg;
  const torch::Tensor& fc = require(weights, "i_classifier.fc.0.weight", 2, source);
  cfg.num_classes = fc.size(0);
  cfg.feature_dim = fc.size(1);
  if (find(weights, "b_classifier.q.0.weight") != nullptr) {
    cfg.nonlinear_q = true;
  } else if (find(weights, "b_classifier.q.weight") != nullptr) {
    cfg.nonlinear_q = false;
  } else {
    throw Error(source, "b_classifier.q.0.weight",
                "missing from the state dict (neither the nonlinear q.0/q.2 nor the linear q keys are there)");
  }
  cfg.passing_v = find(weights, "b_classifier.v.1.weight") != nullptr;
  return cfg;
}

void load_state_dict(DsmilNetImpl& model, const StateDict& weights, const std::string& source) {
  std::map<std::string, const torch::Tensor*> given;
  for (const auto& [k, t] : weights) given[k] = &t;
  torch::NoGradGuard no_grad;
  for (auto& item : model.named_parameters()) {
    auto it = given.find(item.key());
    if (it == given.end()) throw Error(source, item.key(), "missing from the state dict");
    const torch::Tensor& src = *it->second;
    if (src.sizes() != item.value().sizes()) {
      throw Error(source, item.key(),
                  "has shape " + shape_text(src.sizes()) + ", the model needs " + shape_text(item.value().sizes()) +
                      " (" + model.config().describe() + ")");
    }
    item.value().copy_(src.to(item.value().options()));
    given.erase(it);
  }
  if (!given.empty()) {
    throw Error(source, given.begin()->first,
                "unexpected key: not a parameter of the model (" + model.config().describe() + ")");
  }
}

StateDict read_state_dict(const std::string& path) {
  return state_dict_from_ivalue(io::read_torch_archive(path), path);
}

void write_state_dict(const std::string& path, const StateDict& weights) {
  io::write_torch_archive(path, to_generic_dict(weights));
}

nlohmann::json to_json(const ModelConfig& cfg) {
  return {{"feature_dim", cfg.feature_dim}, {"num_classes", cfg.num_classes}, {"nonlinear_q", cfg.nonlinear_q},
          {"passing_v", cfg.passing_v},     {"dropout_v", cfg.dropout_v},     {"value_relu", cfg.value_relu}};
}

ModelConfig model_config_from_json(const nlohmann::json& j, const std::string& source) {
  ModelConfig cfg;
  try {
    cfg.feature_dim = j.at("feature_dim").get<int64_t>();
    cfg.num_classes = j.at("num_classes").get<int64_t>();
    cfg.nonlinear_q = j.at("nonlinear_q").get<bool>();
    cfg.passing_v = j.at("passing_v").get<bool>();
    cfg.dropout_v = j.value("dropout_v", 0.0);
    cfg.value_relu = j.value("value_relu", true);  // format 1 had no such key: always the ReLU
  } catch (const nlohmann::json::exception& e) {
    throw Error(source, "config", std::string("invalid model configuration: ") + e.what());
  }
  if (cfg.feature_dim < 1 || cfg.num_classes < 1)
    throw Error(source, "config", "feature_dim and num_classes must be >= 1");
  return cfg;
}

void save_model(const std::string& path, DsmilNetImpl& model, const nlohmann::json& metadata) {
  c10::impl::GenericDict file(c10::StringType::get(), c10::AnyType::get());
  file.insert("format", std::string("dsmil-model"));
  file.insert("format_version", kModelFormatVersion);
  file.insert("config", to_json(model.config()).dump());
  file.insert("metadata", (metadata.is_null() ? nlohmann::json::object() : metadata).dump());
  file.insert("state_dict", to_generic_dict(state_dict_of(model)));
  io::write_torch_archive(path, file);
}

SavedModel read_model(const std::string& path) {
  const c10::IValue value = io::read_torch_archive(path);
  SavedModel saved;
  if (value.isGenericDict()) {
    const auto dict = value.toGenericDict();
    auto format = dict.find(c10::IValue(std::string("format")));
    if (format != dict.end() && format->value().isString() && format->value().toStringRef() == "dsmil-model") {
      const int64_t version = dict.at(c10::IValue(std::string("format_version"))).toInt();
      if (version > kModelFormatVersion) {
        throw Error(path, "format_version",
                    "model format " + std::to_string(version) + " is newer than this build reads (" +
                        std::to_string(kModelFormatVersion) + ")");
      }
      // A damaged file: config/metadata JSON that does not parse, an entry missing or of another type
      // (nlohmann, c10 and std::out_of_range exceptions; found by fuzz_torch_archive).
      try {
        saved.config = model_config_from_json(
            nlohmann::json::parse(dict.at(c10::IValue(std::string("config"))).toStringRef()), path);
        saved.metadata = nlohmann::json::parse(dict.at(c10::IValue(std::string("metadata"))).toStringRef());
        saved.weights = state_dict_from_ivalue(dict.at(c10::IValue(std::string("state_dict"))), path);
      } catch (const Error&) {
        throw;
      } catch (const std::exception& e) {
        throw Error(path, "", std::string("malformed dsmil model file: ") + e.what());
      }
      return saved;
    }
  }
  saved.weights = state_dict_from_ivalue(value, path);
  saved.config = infer_config(saved.weights, path);
  saved.config_from_keys = true;
  return saved;
}

DsmilNet load_model(const std::string& path, nlohmann::json* metadata, std::optional<bool> pth_value_relu) {
  SavedModel saved = read_model(path);
  if (pth_value_relu.has_value()) {
    const auto text = [](bool b) { return std::string(b ? "true" : "false"); };
    if (!saved.config_from_keys && *pth_value_relu != saved.config.value_relu) {
      throw Error(path, "config",
                  "the model records value_relu " + text(saved.config.value_relu) + "; --value-relu " +
                      text(*pth_value_relu) + " is for .pth files, whose keys cannot tell");
    }
    if (!saved.config.passing_v && !*pth_value_relu) {
      throw Error(path, "b_classifier.v.1.weight",
                  "missing: --value-relu false needs a value network (passing-v), and this state dict has none");
    }
    saved.config.value_relu = *pth_value_relu;
  }
  DsmilNet model(saved.config);
  load_state_dict(*model, saved.weights, path);
  model->eval();
  if (metadata != nullptr) *metadata = std::move(saved.metadata);
  return model;
}

}  // namespace mil
