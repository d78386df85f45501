#include "mil/util/threads.hpp"

#include <sched.h>
#include <torch/torch.h>

#include <algorithm>
#include <thread>

namespace mil {

int auto_thread_count(int cores, int ranks_per_host, int allowed_cores) {
  int share = std::max(1, cores / std::max(1, ranks_per_host));
  if (allowed_cores > 0) share = std::min(share, allowed_cores);
  // Measured on 2 cores (bench/README.md, "Threads"): one thread per process beats two at every bag size,
  // since a DSMIL step is a chain of small GEMMs and passes whose fork/join costs more than a second core
  // gains. Larger shares keep every core (not measured here: no bigger machine was available).
  return share <= 2 ? 1 : share;
}

int set_torch_threads(int n, int ranks_per_host) {
  if (n <= 0) {
    const int cores = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
    cpu_set_t allowed;
    CPU_ZERO(&allowed);
    const int bound = sched_getaffinity(0, sizeof(allowed), &allowed) == 0 ? CPU_COUNT(&allowed) : 0;
    n = auto_thread_count(cores, ranks_per_host, bound);
  }
  torch::set_num_threads(n);
  return torch::get_num_threads();
}

}  // namespace mil
