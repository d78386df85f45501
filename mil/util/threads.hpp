#pragma once

namespace mil {

// The libtorch thread count `--threads 0` picks: this process's share of the host, its cores divided by
// `ranks_per_host` (the processes of a job sharing them) and no more than `allowed_cores` it is bound to
// (mpirun binds a rank to one core unless told --bind-to none; 0 = unknown).
int auto_thread_count(int cores, int ranks_per_host, int allowed_cores);

// Sets libtorch's intra-op thread count. Debian's libtorch defaults to 1 thread and the PyPI build to
// the core count; we always set it explicitly. n <= 0: auto_thread_count for this host. Returns the count
// in effect.
int set_torch_threads(int n, int ranks_per_host = 1);

}  // namespace mil
