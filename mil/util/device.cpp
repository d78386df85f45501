#include "mil/util/device.hpp"

#include <algorithm>

#include "mil/util/error.hpp"

namespace mil {

torch::Device resolve_device(const std::string& spec, int local_rank) {
  if (spec == "cpu") return torch::kCPU;
  const bool cuda = torch::cuda::is_available();
  if (spec == "auto")
    return cuda ? torch::Device(torch::kCUDA, local_rank % std::max<int>(1, torch::cuda::device_count())) : torch::kCPU;
  if (!cuda) throw Error("", "--device", "'" + spec + "' asked for, but CUDA is not available in this build/machine");
  if (spec == "cuda") return torch::Device(torch::kCUDA, local_rank % static_cast<int>(torch::cuda::device_count()));
  return torch::Device(spec);
}

}  // namespace mil
