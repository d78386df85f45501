#pragma once
// Checkpoints that survive a spot reclaim: each one is a directory `ckpt-<step>` committed atomically
// (written as a hidden temporary directory, every file and the directory fsynced, a MANIFEST of sizes and
// CRC32s written last, then renamed into place), so neither a crash nor SageMaker's S3 sync of
// /opt/ml/checkpoints ever sees a partial checkpoint under a final name. The newest `keep` are kept; older
// ones are deleted only after a newer one is complete.
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace mil {

struct Checkpoint {
  int64_t step = 0;
  std::string path;
  std::map<std::string, std::string> files;  // name -> contents
};

class CheckpointStore {
 public:
  explicit CheckpointStore(std::string dir, int keep = 2);

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
  std::string dir_;
  int keep_;
};

// CRC32 of bytes, as 8 hex digits (zlib's polynomial): file checksums and configuration/data digests.
std::string crc32_hex(const std::string& bytes);

}  // namespace mil
