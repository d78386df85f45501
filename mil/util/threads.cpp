#include "mil/util/threads.hpp"

#include <sched.h>
#include <torch/torch.h>

#include <algorithm>
#include <thread>

namespace mil {

int set_torch_threads(int n, int ranks_per_host) {
  if (n <= 0) {
    const int cores = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
    n = std::max(1, cores / std::max(1, ranks_per_host));
    cpu_set_t allowed;
    CPU_ZERO(&allowed);
    if (sched_getaffinity(0, sizeof(allowed), &allowed) == 0) n = std::min(n, std::max(1, CPU_COUNT(&allowed)));
  }
  torch::set_num_threads(n);
  return torch::get_num_threads();
}

}  // namespace mil
