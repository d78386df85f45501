#pragma once
// The checkpoint fuzz input: state.json, tensors.pt and optimizer.pt joined by kFileSeparator, decoded against
// a fixed identity (the default training settings). The seed generator writes checkpoints of that identity so
// that the fuzzer starts past the identity check.
#include <string>
#include <vector>

#include "mil/config/train_config.hpp"
#include "mil/train/checkpoint_state.hpp"

namespace mil::fuzz {

inline const std::vector<std::string>& checkpoint_file_names() {
  static const std::vector<std::string> names = {"state.json", "tensors.pt", "optimizer.pt"};
  return names;
}

inline JobIdentity checkpoint_identity() {
  return JobIdentity{training_settings(TrainConfig{}), "0123abcd", 1};
}

}  // namespace mil::fuzz
