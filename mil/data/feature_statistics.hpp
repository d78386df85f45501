#pragma once
// Per-feature standardisation statistics of a training set (--standardize).
#include <torch/torch.h>

#include <string>
#include <utility>

#include "mil/data/bag_index.hpp"

namespace mil {

// Per-feature mean and standard deviation over every instance of `train`'s bags (one streaming pass, in
// float64 so millions of instances do not lose precision), returned as float32 [D] tensors. A constant
// feature gets std 1, so it is left unscaled rather than divided by zero.
std::pair<torch::Tensor, torch::Tensor> feature_statistics(const BagIndex& train, const std::string& features_key,
                                                           int prefetch);

}  // namespace mil
