#pragma once
// Which device a process computes on.
#include <torch/torch.h>

#include <string>
#include <utility>

namespace mil {

// The device named by --device: "cpu", "cuda", "cuda:N", or "auto" (CUDA when available, else the CPU).
// "cuda" and "auto" take the GPU of this process's rank on its host (`local_rank` of `local_size`), so the
// ranks of a host use one GPU each. Throws mil::Error when CUDA is asked for but not available, or when the
// ranks on the host outnumber its GPUs.
torch::Device resolve_device(const std::string& spec, int local_rank, int local_size = 1);

// Whether --device `spec` resolves to a GPU on this machine (without checking the rank counts): "cuda..."
// when CUDA is available, "auto" when a GPU is visible. What --comm auto and --comm nccl decide on.
bool device_is_cuda(const std::string& spec);

// The CUDA device index of node-local rank `local_rank` of `local_size` on a host with `gpus` GPUs: one GPU
// per rank. Throws mil::Error naming both counts when the ranks on the host outnumber its GPUs (they would
// share a GPU, which NCCL refuses), or when there is no GPU at all. Separate from the device lookup so that
// the rule is tested with any GPU count on a machine without GPUs.
int gpu_for_local_rank(int local_rank, int local_size, int gpus);

// The compute capability (major, minor) of CUDA device `index`; {0, 0} where it cannot be read (a build
// without CUDA, or no such device).
std::pair<int, int> cuda_compute_capability(int index);

}  // namespace mil
