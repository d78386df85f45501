#include "mil/util/host_memory.hpp"

#include <sys/resource.h>

#include <algorithm>
#include <fstream>
#include <limits>
#include <string>

namespace mil {
namespace {

// A number read from a one-value file such as memory.max, or -1 ("max", absent, unreadable).
int64_t read_number(const char* path) {
  std::ifstream in(path);
  std::string text;
  if (!(in >> text) || text.empty() || text.find_first_not_of("0123456789") != std::string::npos) return -1;
  try {
    return std::stoll(text);
  } catch (const std::out_of_range&) {
    return -1;  // cgroup v1 writes "no limit" as a huge number
  }
}

int64_t mem_available() {
  std::ifstream in("/proc/meminfo");
  std::string key;
  int64_t kb = 0;
  std::string unit;
  while (in >> key >> kb >> unit) {
    if (key == "MemAvailable:") return kb * 1024;
  }
  return -1;
}

// Room left under the cgroup limit: cgroup v2 first, then v1.
int64_t cgroup_room() {
  for (const auto& [limit_file, usage_file] :
       {std::pair{"/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"},
        std::pair{"/sys/fs/cgroup/memory/memory.limit_in_bytes", "/sys/fs/cgroup/memory/memory.usage_in_bytes"}}) {
    const int64_t limit = read_number(limit_file);
    if (limit <= 0 || limit > (int64_t{1} << 60)) continue;
    return std::max<int64_t>(0, limit - std::max<int64_t>(0, read_number(usage_file)));
  }
  return -1;
}

}  // namespace

int64_t available_memory_bytes() {
  int64_t best = std::numeric_limits<int64_t>::max();
  for (int64_t v : {mem_available(), cgroup_room()}) {
    if (v >= 0) best = std::min(best, v);
  }
  return best == std::numeric_limits<int64_t>::max() ? 0 : best;
}

int64_t peak_resident_bytes() {
  rusage usage{};
  if (getrusage(RUSAGE_SELF, &usage) != 0) return 0;
  return static_cast<int64_t>(usage.ru_maxrss) * 1024;  // Linux reports kilobytes
}

}  // namespace mil
