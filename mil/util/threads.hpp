#pragma once

namespace mil {

// Sets libtorch's intra-op thread count. Debian's libtorch defaults to 1 thread and the PyPI build to
// the core count; we always set it explicitly. n <= 0 means "all hardware threads".
// Returns the count in effect.
int set_torch_threads(int n);

}  // namespace mil
