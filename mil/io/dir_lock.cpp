#include "mil/io/dir_lock.hpp"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <filesystem>

#include "mil/util/error.hpp"

namespace mil::io {
namespace {

std::string holder_text() {
  char host[256] = {0};
  ::gethostname(host, sizeof(host) - 1);
  const auto now = std::chrono::system_clock::to_time_t(std::chrono::system_clock::now());
  return "host " + std::string(host) + " pid " + std::to_string(::getpid()) + " since unix time " +
         std::to_string(static_cast<long long>(now)) + "\n";
}

std::string read_holder(int fd) {
  char buf[512];
  const ssize_t n = ::pread(fd, buf, sizeof(buf) - 1, 0);
  if (n <= 0) return "unknown";
  std::string s(buf, static_cast<size_t>(n));
  while (!s.empty() && (s.back() == '\n' || s.back() == '\0')) s.pop_back();
  return s.empty() ? "unknown" : s;
}

}  // namespace

DirectoryLock::DirectoryLock(const std::string& dir, const std::string& purpose) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) throw Error(dir, "", "cannot create the " + purpose + ": " + ec.message());
  path_ = (std::filesystem::path(dir) / ".dsmil.lock").string();
  fd_ = ::open(path_.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (fd_ < 0) throw Error(dir, "", "cannot create the lock file of the " + purpose + ": " + errno_text());
  int rc;
  do {
    rc = ::flock(fd_, LOCK_EX | LOCK_NB);
  } while (rc != 0 && errno == EINTR);
  if (rc != 0) {
    const bool held = errno == EWOULDBLOCK;
    const std::string why = held ? "" : errno_text();
    const std::string holder = held ? read_holder(fd_) : "";
    ::close(fd_);
    fd_ = -1;
    if (!held) throw Error(dir, "", "cannot lock the " + purpose + ": " + why);
    throw Error(dir, "",
                "the " + purpose + " is in use by another running job (" + holder +
                    "); two jobs on one directory would resume and prune each other's checkpoints: give this job "
                    "its own directory, or stop the other one");
  }
  // Who holds it, for the next job's message; best effort (the lock works without it).
  const std::string me = holder_text();
  if (::ftruncate(fd_, 0) == 0 && ::pwrite(fd_, me.data(), me.size(), 0) < 0) {
    // nothing to do: the lock is held whether or not the note was written
  }
}

DirectoryLock::~DirectoryLock() {
  if (fd_ >= 0) ::close(fd_);  // closing the only descriptor releases the flock
}

}  // namespace mil::io
