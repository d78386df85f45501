#pragma once
// Model weights in and out of PyTorch state-dict files, with the reference key names.
#include <torch/torch.h>

#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "mil/model/dsmil.hpp"

namespace mil {

// Ordered (key, tensor) pairs, keys as in the reference (`i_classifier.fc.0.weight`, ...).
using StateDict = std::vector<std::pair<std::string, torch::Tensor>>;

// CPU, contiguous float32 copies of the model's parameters in registration order.
StateDict state_dict_of(DsmilNetImpl& model);

// Architecture from the keys and shapes alone (C and D from `i_classifier.fc.0.weight`, q linear or
// not, passing v or not). Throws mil::Error naming `source` and the key that is missing or wrong.
ModelConfig infer_config(const StateDict& weights, const std::string& source);

// Strict load: every parameter must be present with its exact shape, and no key may be left over.
// Throws mil::Error naming `source` and the offending key.
void load_state_dict(DsmilNetImpl& model, const StateDict& weights, const std::string& source);

// A `torch.save` file holding a state dict: the dict itself, or a checkpoint dict with the weights under
// `state_dict` or `model`. A DataParallel `module.` prefix is removed. Storages load on the CPU.
StateDict read_state_dict(const std::string& path);

// A plain state dict that Python loads with `torch.load` + `load_state_dict(strict=True)`.
void write_state_dict(const std::string& path, const StateDict& weights);

// Our own model file: a torch.save-compatible dict {format_version, config (JSON text), metadata (JSON
// text), state_dict}. It carries the architecture, so loading needs no flags.
struct SavedModel {
  ModelConfig config;
  StateDict weights;
  nlohmann::json metadata = nlohmann::json::object();  // thresholds, class names, ... (set by callers)
  bool config_from_keys = false;                       // a plain .pth: the architecture was inferred from its keys
};
// 2: config gains value_relu (a format-1 reader would build v with a ReLU regardless).
inline constexpr int64_t kModelFormatVersion = 2;

void save_model(const std::string& path, DsmilNetImpl& model, const nlohmann::json& metadata = {});
// Reads our model file, or any reference-style .pth (architecture inferred from its keys).
SavedModel read_model(const std::string& path);
// read_model + construct + strict load, in eval mode. `pth_value_relu` sets what a .pth's keys cannot
// tell: whether its value network ends in a ReLU (false: weights of the authors' 2020 code). Given for our
// own model file, it must agree with the file.
DsmilNet load_model(const std::string& path, nlohmann::json* metadata = nullptr,
                    std::optional<bool> pth_value_relu = std::nullopt);

nlohmann::json to_json(const ModelConfig& cfg);
ModelConfig model_config_from_json(const nlohmann::json& j, const std::string& source);

}  // namespace mil
