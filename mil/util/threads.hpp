#pragma once

namespace mil {

// Sets libtorch's intra-op thread count. Debian's libtorch defaults to 1 thread and the PyPI build to
// the core count; we always set it explicitly. n <= 0 means this process's share of the host: its cores
// divided by `ranks_per_host` (the processes of a job sharing them), and no more than the cores it is
// bound to (mpirun binds a rank to one core unless told --bind-to none). Returns the count in effect.
int set_torch_threads(int n, int ranks_per_host = 1);

}  // namespace mil
