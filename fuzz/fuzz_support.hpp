#pragma once
// What every fuzz target shares. The policy: a mil::Error is the reader doing its job (a clear message naming
// the file); anything else escaping a reader on bad input is a finding: a std::logic_error from MIL_CHECK
// (an internal error on user input is a bug too), a json/c10/std exception that reaches the user as a raw
// library message, std::bad_alloc (an unbounded allocation). Findings abort, so libFuzzer saves the input and
// the replay test fails; crashes and sanitizer reports abort on their own.
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <string>
#include <vector>

// Each target defines its entry point under this name: LLVMFuzzerTestOneInput in the libFuzzer build, a name
// of its own in the replay build (one binary holds every target; tests/CMakeLists.txt sets the names).
#ifndef DSMIL_FUZZ_ENTRY
#define DSMIL_FUZZ_ENTRY LLVMFuzzerTestOneInput
#endif

namespace mil::fuzz {

// Runs `body`; returns 0 when it returns or throws mil::Error, prints the finding and aborts otherwise.
int guarded(const char* target, const std::function<void()>& body);

// A fresh directory under $TMPDIR (or /tmp), removed with everything in it on destruction. Readers of HDF5
// and the JSON configs take paths, so the input goes to a file.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::filesystem::path& path() const { return path_; }
  // Writes `bytes` to path()/name (creating parent directories) and returns the file's path.
  std::string write(const std::string& name, const std::string& bytes) const;

 private:
  std::filesystem::path path_;
};

// Inputs holding several files (a checkpoint): the files' contents separated by kFileSeparator, assigned to
// `names` in order. Missing trailing parts are absent from the map; parts beyond `names` are ignored.
inline constexpr const char* kFileSeparator = "\n@@dsmil-fuzz-file@@\n";
std::map<std::string, std::string> split_files(const std::string& input, const std::vector<std::string>& names);
std::string join_files(const std::vector<std::string>& contents);

}  // namespace mil::fuzz
