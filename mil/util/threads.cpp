#include "mil/util/threads.hpp"

#include <sched.h>
#include <torch/torch.h>

#include <algorithm>
#include <thread>

namespace mil {

int auto_thread_count(int cores, int ranks_per_host, int allowed_cores) {
  int share = std::max(1, cores / std::max(1, ranks_per_host));
  if (allowed_cores > 0) share = std::min(share, allowed_cores);
  // Every core of the share: on an idle 2-core machine two threads train WSI-sized bags 1.5x faster than
  // one (bench/README.md, "Threads"); small bags get one (auto_thread_count_for_steps). Where other work
  // shares the cores, OpenMP's threads wait on each other at every op: pass --threads 1 there.
  return share;
}

int auto_thread_count_for_steps(int threads, double instances_per_step, int64_t feature_dim) {
  return instances_per_step * static_cast<double>(feature_dim) < kOneThreadStepWork ? 1 : threads;
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
