#pragma once
#include <cstdint>

namespace mil {

// Bytes of memory this process may still use: the smaller of the kernel's MemAvailable and the room left
// under the cgroup's memory limit (a container's limit, as in SageMaker and Docker), or 0 when neither can
// be read.
int64_t available_memory_bytes();

// The most resident memory this process has held so far (getrusage's ru_maxrss), in bytes.
int64_t peak_resident_bytes();

}  // namespace mil
