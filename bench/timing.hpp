#pragma once
// Timing helpers shared by the benchmark binaries.
#include <algorithm>
#include <vector>

#include "mil/util/clock.hpp"

namespace mil::bench {

using mil::Clock;
using mil::seconds_since;

inline double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

}  // namespace mil::bench
