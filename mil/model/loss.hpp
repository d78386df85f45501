#pragma once
#include <torch/torch.h>

#include "mil/model/dsmil.hpp"

namespace mil {

// The reference loss: 0.5 * BCEWithLogits(bag logits, y) + 0.5 * BCEWithLogits(max over instances of
// the instance logits, y), each averaged over the C classes. `target` holds C values in {0, 1}.
torch::Tensor dsmil_loss(const DsmilOutput& out, const torch::Tensor& target);

}  // namespace mil
