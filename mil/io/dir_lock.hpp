#pragma once
// An advisory lock on a directory owned by one running job: flock(2) on `<dir>/.dsmil.lock`, held while the
// object lives. The kernel drops it when the process ends in any way (SIGKILL and crashes included), so a
// dead job never leaves the directory locked; a restored copy of the lock file (an S3 sync) holds no lock.
// The file records who holds it (host, pid, start time), for the message a second job gets.
#include <string>

namespace mil::io {

class DirectoryLock {
 public:
  // Creates `dir` if needed and locks it, or throws mil::Error naming the directory and its holder at once
  // (no waiting: a second job is refused within seconds, not queued). `purpose` completes the message
  // ("checkpoint directory").
  DirectoryLock(const std::string& dir, const std::string& purpose);
  ~DirectoryLock();
  DirectoryLock(const DirectoryLock&) = delete;
  DirectoryLock& operator=(const DirectoryLock&) = delete;

  const std::string& path() const { return path_; }  // the lock file

 private:
  std::string path_;
  int fd_ = -1;
};

}  // namespace mil::io
