#pragma once
// Which device a process computes on.
#include <torch/torch.h>

#include <string>

namespace mil {

// The device named by --device: "cpu", "cuda", "cuda:N", or "auto" (CUDA when available, else the CPU).
// "cuda" and "auto" take the GPU of this process's rank on its host (`local_rank`), so the ranks of a host
// use one GPU each. Throws mil::Error when CUDA is asked for but not available.
torch::Device resolve_device(const std::string& spec, int local_rank);

}  // namespace mil
