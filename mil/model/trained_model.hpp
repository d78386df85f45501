#pragma once
// A trained model as users keep it: the network plus what is needed to use it on new slides (class
// names, per-class thresholds, feature standardisation, how scores are formed).
#include <torch/torch.h>

#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "mil/data/labels.hpp"
#include "mil/model/dsmil.hpp"

namespace mil {

struct TrainedModel {
  DsmilNet net{nullptr};
  ClassMap classes;
  std::vector<double> thresholds;  // per class: probability >= threshold -> class present
  torch::Tensor feature_mean;      // [D]; undefined when features are used as they are
  torch::Tensor feature_std;       // [D]
  bool average = false;            // score = (sigmoid(bag) + sigmoid(max instance)) / 2, else sigmoid(bag)
  nlohmann::json info = nlohmann::json::object();  // provenance: best epoch, fold, metrics...

  // Features ready for the network: float32 on `device`, standardised when the model was trained so.
  torch::Tensor prepare(const torch::Tensor& features, const torch::Device& device) const;
  // Per-class scores in [0, 1] from one forward pass: [C] float32 where the pass ran, or on the host.
  torch::Tensor probability_tensor(const DsmilOutput& out) const;
  std::vector<double> probabilities(const DsmilOutput& out) const;
};

// Writes <dir>/model.pt (our format: carries everything above) and <dir>/model.pth (the plain state dict
// with the reference key names, for the authors' scripts and PyTorch users) and <dir>/thresholds.json.
void save_trained_model(const std::string& dir, TrainedModel& model);

// A model dir written by save_trained_model, one of its model.pt files, or any reference-style .pth
// (architecture inferred from its keys; thresholds 0.5; classes "0".."C-1"). Loaded on the CPU, eval mode.
// `pth_value_relu`: see load_model.
TrainedModel load_trained_model(const std::string& path, std::optional<bool> pth_value_relu = std::nullopt);

}  // namespace mil
