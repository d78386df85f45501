#pragma once
// Checkpoints that survive a spot reclaim: each one is a directory `ckpt-<step>` committed atomically
// (written as a hidden temporary directory, every file and the directory fsynced, a MANIFEST of sizes and
// CRC32s written last, then renamed into place), so neither a crash nor SageMaker's S3 sync of
// /opt/ml/checkpoints ever sees a partial checkpoint under a final name. The newest `keep` are kept; older
// ones are deleted only after a newer one is complete, and never the newest valid one (when the newer ones
// fail their checksums).
//
// Ownership: a job's store is `exclusive`: it holds an advisory lock on the directory (io::DirectoryLock)
// for its life, so a second job on the same directory is refused at once instead of resuming the first's
// checkpoints and pruning its files. Temporary directories carry a per-store nonce
// (`.ckpt-<step>.<nonce>.tmp`); leftovers of other nonces are removed only under the lock, when their
// writer is known to be dead.
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace mil {
namespace io {
class DirectoryLock;
}

struct Checkpoint {
  int64_t step = 0;
  std::string path;
  std::map<std::string, std::string> files;  // name -> contents
};

class CheckpointStore {
 public:
  // `exclusive`: lock the directory (creating it) for the life of the store, or throw mil::Error naming
  // the directory when another live process holds it.
  explicit CheckpointStore(std::string dir, int keep = 2, bool exclusive = false);
  ~CheckpointStore();
  CheckpointStore(CheckpointStore&&) noexcept;
  CheckpointStore& operator=(CheckpointStore&&) noexcept;

  const std::string& dir() const { return dir_; }

  // Commits `files` (name -> contents; plain names, no '/') as checkpoint `step` and prunes old ones.
  // Throws mil::Error naming the path on any failure; the checkpoints already there stay valid.
  std::string write(int64_t step, const std::map<std::string, std::string>& files);

  // The newest checkpoint whose files match its MANIFEST; a truncated or corrupt newer one is reported
  // (warning) and skipped. nullopt when there is none.
  std::optional<Checkpoint> load_latest() const;

  // Complete checkpoint directories (with a MANIFEST), newest first.
  std::vector<std::string> list() const;

  // The step of the newest complete checkpoint, usable or not; nullopt when there is none.
  std::optional<int64_t> newest_step() const;

 private:
  void prune(const std::string& written) const;

  std::string dir_;
  int keep_;
  std::string nonce_;  // of this store's temporary directories
  std::unique_ptr<io::DirectoryLock> lock_;
};

// Crash injection for tests: when set to k > 0, write() sends SIGKILL to its own process at stage k of a
// commit (1 temporary directory made, 2 first file written, 3 every file written, 4 manifest written,
// 5 renamed into place, 6 pruned). Tests set it in a forked child.
void set_checkpoint_kill_stage_for_testing(int stage);

// CRC32 of bytes, as 8 hex digits (zlib's polynomial): file checksums and configuration/data digests.
std::string crc32_hex(const std::string& bytes);

}  // namespace mil
