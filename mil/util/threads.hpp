#pragma once

#include <cstdint>

namespace mil {

// The libtorch thread count `--threads 0` picks: this process's share of the host, its cores divided by
// `ranks_per_host` (the processes of a job sharing them) and no more than `allowed_cores` it is bound to
// (mpirun binds a rank to one core unless told --bind-to none; 0 = unknown).
int auto_thread_count(int cores, int ranks_per_host, int allowed_cores);

// Sets libtorch's intra-op thread count. Debian's libtorch defaults to 1 thread and the PyPI build to
// the core count; we always set it explicitly. n <= 0: auto_thread_count for this host. Returns the count
// in effect.
int set_torch_threads(int n, int ranks_per_host = 1);

// The work of one training step (instances x D) below which one thread trains faster than several: waking
// and joining a second OpenMP thread at every op costs more than it saves, and its spinning takes the core
// the loader's thread needs. Measured on 2 cores (bench/README.md, "Threads by bag size"): bags of ~7 x 200
// train 1.1-1.5x faster on one thread, ~30 x 512 as fast, ~60 x 512 and up faster on two.
constexpr double kOneThreadStepWork = 16384;

// `--threads 0` once the data is known: one thread for steps of less than kOneThreadStepWork (mean
// instances per step x D), otherwise `threads` (the process's share of the cores).
int auto_thread_count_for_steps(int threads, double instances_per_step, int64_t feature_dim);

}  // namespace mil
