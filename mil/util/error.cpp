#include "mil/util/error.hpp"

#include <cerrno>
#include <cstring>

namespace mil {
namespace {
// "file: object: reason", leaving out the parts that are empty.
std::string format_message(const std::string& file, const std::string& object, const std::string& reason) {
  std::string msg;
  if (!file.empty()) msg += file + ": ";
  if (!object.empty()) msg += "'" + object + "': ";
  return msg + reason;
}
}  // namespace

Error::Error(std::string file, std::string object, std::string reason)
    : std::runtime_error(format_message(file, object, reason)),
      file_(std::move(file)),
      object_(std::move(object)),
      reason_(std::move(reason)) {}

std::string errno_text() {
  return std::strerror(errno);
}

}  // namespace mil
