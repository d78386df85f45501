#include "mil/util/logging.hpp"

#include <c10/util/Exception.h>
#include <spdlog/spdlog.h>

#include <cstdio>
#include <filesystem>
#include <fstream>

namespace mil {

void setup_logging(const std::string& level, int rank, int world_size) {
  spdlog::set_level(spdlog::level::from_str(level));
  if (world_size > 1) {
    // No colour codes: mpirun gives ranks a pseudo-terminal, so they would reach the collected logs.
    spdlog::set_pattern(fmt::format("[%Y-%m-%d %T r{}/{}] [%l] %v", rank, world_size));
    if (rank != 0 && spdlog::get_level() < spdlog::level::warn) spdlog::set_level(spdlog::level::warn);
  } else {
    spdlog::set_pattern("[%Y-%m-%d %T] [%^%l%$] %v");
  }
}

int report_failure(const std::string& program, const std::exception& e, const std::string& failure_file,
                   const std::string& where) {
  // libtorch errors carry a C++ backtrace after the message: keep the message.
  const auto* torch_error = dynamic_cast<const c10::Error*>(&e);
  std::string msg =
      (where.empty() ? "" : where + ": ") + (torch_error != nullptr ? torch_error->what_without_backtrace() : e.what());
  for (char& c : msg) {
    if (c == '\n' || c == '\r') c = ' ';
  }
  std::fprintf(stderr, "%s: error: %s\n", program.c_str(), msg.c_str());
  std::fflush(stderr);
  if (!failure_file.empty()) {
    std::error_code ec;
    std::filesystem::create_directories(std::filesystem::path(failure_file).parent_path(), ec);
    std::ofstream out(failure_file);
    out << msg << "\n";
  }
  return 1;
}

}  // namespace mil
