#pragma once
// One exception type for everything that goes wrong with a user's input or environment. It carries
// the file, the object inside it (HDF5 dataset, state-dict key, CSV column...) and the reason, so the
// binaries can print one line that tells the user what to fix.
#include <stdexcept>
#include <string>

namespace mil {

class Error : public std::runtime_error {
 public:
  Error(std::string file, std::string object, std::string reason);
  explicit Error(std::string reason) : Error("", "", std::move(reason)) {}

  const std::string& file() const { return file_; }
  const std::string& object() const { return object_; }
  const std::string& reason() const { return reason_; }

 private:
  std::string file_;
  std::string object_;
  std::string reason_;
};

// The C library's text for the current errno ("No such file or directory"), for an Error's reason.
std::string errno_text();

}  // namespace mil
