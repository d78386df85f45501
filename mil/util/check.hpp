#pragma once
// Internal checks: a broken invariant of our own code (a bug), as opposed to mil::Error, which reports
// what a user or the environment got wrong. MIL_CHECK throws std::logic_error with the place and the
// condition, so the one-line failure report reads "internal error at file:line: ...", and a user can tell
// their mistake from ours.
#include <stdexcept>
#include <string>

namespace mil::detail {

[[noreturn]] inline void check_failed(const char* file, int line, const char* condition, const std::string& what) {
  throw std::logic_error(std::string("internal error at ") + file + ":" + std::to_string(line) + ": " + condition +
                         (what.empty() ? "" : " (" + what + ")"));
}

}  // namespace mil::detail

// MIL_CHECK(cond, message): message is a std::string expression, evaluated only on failure.
#define MIL_CHECK(cond, message)                                                    \
  do {                                                                              \
    if (!(cond)) ::mil::detail::check_failed(__FILE__, __LINE__, #cond, (message)); \
  } while (false)
