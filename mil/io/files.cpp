#include "mil/io/files.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "mil/util/error.hpp"

namespace mil::io {
namespace {

void write_all(int fd, std::string_view bytes, const std::string& path) {
  const char* p = bytes.data();
  size_t left = bytes.size();
  while (left > 0) {
    ssize_t n = ::write(fd, p, left);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) throw Error(path, "", "write failed: " + errno_text());
    p += n;
    left -= static_cast<size_t>(n);
  }
}

void fsync_directory(const std::filesystem::path& dir) {
  int fd = ::open(dir.empty() ? "." : dir.c_str(), O_RDONLY | O_DIRECTORY);
  if (fd < 0) return;  // some filesystems do not allow opening a directory; the rename is still atomic
  ::fsync(fd);
  ::close(fd);
}

}  // namespace

void write_file_synced(const std::string& path, std::string_view bytes) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) throw Error(path, "", "cannot create: " + errno_text());
  try {
    write_all(fd, bytes, path);
    if (::fsync(fd) != 0) throw Error(path, "", "fsync failed: " + errno_text());
  } catch (...) {
    ::close(fd);
    ::unlink(path.c_str());
    throw;
  }
  if (::close(fd) != 0) {
    ::unlink(path.c_str());
    throw Error(path, "", "close failed: " + errno_text());
  }
}

void write_file_atomically(const std::string& path, std::string_view bytes) {
  namespace fs = std::filesystem;
  const fs::path target(path);
  std::string tmp_name = ".";  // a hidden temporary beside the target, so rename() is atomic
  tmp_name += target.filename().string();
  tmp_name += ".tmp";
  const fs::path tmp = target.parent_path() / tmp_name;
  try {
    write_file_synced(tmp.string(), bytes);
  } catch (const Error& e) {
    throw Error(path, "", e.reason() + " (its temporary " + tmp.string() + ")");
  }
  if (::rename(tmp.c_str(), target.c_str()) != 0) {
    std::string why = errno_text();
    ::unlink(tmp.c_str());
    throw Error(path, "", "rename failed: " + why);
  }
  fsync_directory(target.parent_path());
}

void ensure_dir(const std::string& dir, const std::string& what) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) throw Error(dir, "", "cannot create " + what + ": " + ec.message());
  if (!std::filesystem::is_directory(dir, ec)) throw Error(dir, "", what + " exists and is not a directory");
}

void ensure_writable_directories(const std::vector<std::pair<std::string, std::string>>& dirs) {
  namespace fs = std::filesystem;
  for (const auto& [dir, what] : dirs) {
    if (dir.empty()) continue;
    std::error_code ec;
    if (fs::exists(dir, ec) && !fs::is_directory(dir, ec)) {
      throw Error(dir, "", "the " + what + " is a file, not a directory");
    }
    ensure_dir(dir, "the " + what);
    const fs::path probe = fs::path(dir) / (".dsmil-write-probe." + std::to_string(::getpid()));
    const int fd = ::open(probe.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) throw Error(dir, "", "cannot write in the " + what + ": " + errno_text());
    std::string why;
    try {
      write_all(fd, std::string(64 * 1024, '\0'), probe.string());
      if (::fsync(fd) != 0) why = "fsync failed: " + errno_text();
    } catch (const Error& e) {
      why = e.reason();
    }
    ::close(fd);
    ::unlink(probe.c_str());
    if (!why.empty()) throw Error(dir, "", "cannot write in the " + what + " (" + why + ")");
  }
}

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error(path, "", "cannot open: " + errno_text());
  std::ostringstream ss;
  ss << in.rdbuf();
  if (in.bad()) throw Error(path, "", "read failed");
  return ss.str();
}

}  // namespace mil::io
