#include "fuzz/fuzz_support.hpp"

#include <cxxabi.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <exception>
#include <fstream>
#include <stdexcept>
#include <string>
#include <typeinfo>
#include <vector>

#include "mil/util/error.hpp"

namespace mil::fuzz {
namespace fs = std::filesystem;

namespace {

// "std::invalid_argument", "nlohmann::json_abi_v3_11_2::detail::out_of_range", ... for the report.
std::string type_name(const std::type_info& type) {
  int status = 0;
  char* name = abi::__cxa_demangle(type.name(), nullptr, nullptr, &status);
  std::string out = status == 0 && name != nullptr ? name : type.name();
  std::free(name);
  return out;
}

}  // namespace

int guarded(const char* target, const std::function<void()>& body) {
  try {
    body();
    return 0;
  } catch (const mil::Error& e) {
    // The expected outcome; DSMIL_FUZZ_SHOW_ERRORS=1 prints it (what a user would read for this input).
    if (const char* show = std::getenv("DSMIL_FUZZ_SHOW_ERRORS"); show != nullptr && std::string(show) == "1") {
      std::fprintf(stderr, "[fuzz] %s: %s\n", target, e.what());
    }
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "[fuzz] %s: %s escaped instead of mil::Error: %s\n", target, type_name(typeid(e)).c_str(),
                 e.what());
  } catch (...) {
    std::fprintf(stderr, "[fuzz] %s: an exception of unknown type escaped\n", target);
  }
  std::abort();
}

TempDir::TempDir() {
  const char* tmp = std::getenv("TMPDIR");
  std::string pattern = std::string(tmp != nullptr && *tmp != '\0' ? tmp : "/tmp") + "/dsmil-fuzz-XXXXXX";
  std::vector<char> name(pattern.begin(), pattern.end());
  name.push_back('\0');
  if (mkdtemp(name.data()) == nullptr) {
    std::perror("[fuzz] mkdtemp");
    std::abort();
  }
  path_ = name.data();
}

TempDir::~TempDir() {
  std::error_code ec;
  fs::remove_all(path_, ec);
}

std::string TempDir::write(const std::string& name, const std::string& bytes) const {
  const fs::path file = path_ / name;
  fs::create_directories(file.parent_path());
  std::ofstream out(file, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  if (!out.flush()) {
    std::fprintf(stderr, "[fuzz] cannot write %s\n", file.c_str());
    std::abort();
  }
  return file.string();
}

std::map<std::string, std::string> split_files(const std::string& input, const std::vector<std::string>& names) {
  const std::string separator = kFileSeparator;
  std::map<std::string, std::string> files;
  size_t begin = 0;
  for (const std::string& name : names) {
    const size_t end = input.find(separator, begin);
    files[name] = input.substr(begin, end == std::string::npos ? std::string::npos : end - begin);
    if (end == std::string::npos) break;
    begin = end + separator.size();
  }
  return files;
}

std::string join_files(const std::vector<std::string>& contents) {
  std::string out;
  for (size_t i = 0; i < contents.size(); ++i) out += (i ? kFileSeparator : "") + contents[i];
  return out;
}

}  // namespace mil::fuzz
