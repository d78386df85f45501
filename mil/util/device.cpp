#include "mil/util/device.hpp"

#ifdef DSMIL_HAVE_CUDA
#include <ATen/cuda/CUDAContextLight.h>
#endif

#include "mil/util/error.hpp"

namespace mil {

torch::Device resolve_device(const std::string& spec, int local_rank, int local_size) {
  if (spec == "cpu") return torch::kCPU;
  const bool cuda = torch::cuda::is_available();
  if (spec == "auto" && !cuda) return torch::kCPU;
  if (!cuda) throw Error("", "--device", "'" + spec + "' asked for, but CUDA is not available in this build/machine");
  if (spec == "auto" || spec == "cuda") {
    const int gpus = static_cast<int>(torch::cuda::device_count());
    return torch::Device(torch::kCUDA, static_cast<c10::DeviceIndex>(gpu_for_local_rank(local_rank, local_size, gpus)));
  }
  return torch::Device(spec);
}

bool device_is_cuda(const std::string& spec) {
  return spec != "cpu" && torch::cuda::is_available();
}

int gpu_for_local_rank(int local_rank, int local_size, int gpus) {
  if (gpus < 1) throw Error("", "--device", "a GPU was asked for, but this host has none");
  if (local_size > gpus) {
    throw Error("", "--device",
                std::to_string(local_size) + " ranks on this host but only " + std::to_string(gpus) +
                    " GPU(s): start at most one rank per GPU (mpirun -np / --map-by ppr:" + std::to_string(gpus) +
                    ":node), or --device cpu");
  }
  if (local_rank < 0 || local_rank >= local_size) {
    throw Error("", "--device",
                "local rank " + std::to_string(local_rank) + " outside [0, " + std::to_string(local_size) + ")");
  }
  return local_rank;
}

std::pair<int, int> cuda_compute_capability(int index) {
#ifdef DSMIL_HAVE_CUDA
  if (torch::cuda::is_available() && index >= 0 && index < static_cast<int>(torch::cuda::device_count())) {
    const auto* props = at::cuda::getDeviceProperties(index);
    return {props->major, props->minor};
  }
#endif
  (void)index;
  return {0, 0};
}

}  // namespace mil
