#pragma once
// Wall-clock durations for logs, ETAs and benchmarks.
#include <chrono>
#include <cstdio>
#include <string>

namespace mil {

using Clock = std::chrono::steady_clock;

inline double seconds_since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

// "42s", "3.5min", "2.1h": how long something took or will take, for people.
inline std::string format_duration(double s) {
  char buf[32];
  if (s < 120) {
    std::snprintf(buf, sizeof(buf), "%.0fs", s);
  } else if (s < 7200) {
    std::snprintf(buf, sizeof(buf), "%.1fmin", s / 60);
  } else {
    std::snprintf(buf, sizeof(buf), "%.1fh", s / 3600);
  }
  return buf;
}

}  // namespace mil
