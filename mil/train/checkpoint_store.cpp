#include "mil/train/checkpoint_store.hpp"

#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <unistd.h>
#include <zlib.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <random>

#include "mil/io/dir_lock.hpp"
#include "mil/io/files.hpp"
#include "mil/util/error.hpp"

namespace mil {
namespace fs = std::filesystem;
namespace {

constexpr const char* kManifest = "MANIFEST.json";
constexpr const char* kPrefix = "ckpt-";
constexpr const char* kTmpSuffix = ".tmp";

int g_kill_stage = 0;

void kill_point(int stage) {
  if (stage == g_kill_stage) ::kill(::getpid(), SIGKILL);
}

// 16 hex digits, different for every store of every process.
std::string make_nonce() {
  std::random_device rd;
  const uint64_t v = (static_cast<uint64_t>(rd()) << 32) ^ rd() ^ static_cast<uint64_t>(::getpid()) ^
                     static_cast<uint64_t>(std::chrono::steady_clock::now().time_since_epoch().count());
  char buf[24];
  std::snprintf(buf, sizeof(buf), "%016llx", static_cast<unsigned long long>(v));
  return buf;
}

std::string checkpoint_name(int64_t step) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%s%012lld", kPrefix, static_cast<long long>(step));
  return buf;
}

void fsync_path(const fs::path& p, int flags) {
  const int fd = ::open(p.c_str(), flags | O_CLOEXEC);
  if (fd < 0) return;
  ::fsync(fd);
  ::close(fd);
}

// Why the checkpoint at `path` is unusable, or "" when every file matches the manifest.
std::string verify(const fs::path& path, Checkpoint* out) {
  std::string manifest_text;
  try {
    manifest_text = io::read_file((path / kManifest).string());
  } catch (const Error&) {
    return "no manifest";
  }
  nlohmann::json manifest;
  try {
    manifest = nlohmann::json::parse(manifest_text);
    for (const auto& [name, meta] : manifest.at("files").items()) {
      std::string bytes;
      try {
        bytes = io::read_file((path / name).string());
      } catch (const Error&) {
        return name + " is missing";
      }
      if (bytes.size() != meta.at("size").get<size_t>()) {
        return name + " has " + std::to_string(bytes.size()) + " bytes, the manifest says " +
               std::to_string(meta.at("size").get<size_t>()) + " (truncated?)";
      }
      if (crc32_hex(bytes) != meta.at("crc32").get<std::string>()) return name + " fails its checksum (corrupt)";
      if (out != nullptr) out->files[name] = std::move(bytes);
    }
    if (out != nullptr) out->step = manifest.at("step").get<int64_t>();
  } catch (const nlohmann::json::exception& e) {
    return std::string("unreadable manifest: ") + e.what();
  }
  return "";
}

}  // namespace

void set_checkpoint_kill_stage_for_testing(int stage) {
  g_kill_stage = stage;
}

std::string crc32_hex(const std::string& bytes) {
  uLong crc = crc32(0L, Z_NULL, 0);
  size_t done = 0;
  while (done < bytes.size()) {  // zlib takes a uInt length
    const uInt n = static_cast<uInt>(std::min<size_t>(bytes.size() - done, 1u << 30));
    crc = crc32(crc, reinterpret_cast<const Bytef*>(bytes.data() + done), n);
    done += n;
  }
  char buf[16];
  std::snprintf(buf, sizeof(buf), "%08lx", static_cast<unsigned long>(crc));
  return buf;
}

CheckpointStore::CheckpointStore(std::string dir, int keep, bool exclusive)
    : dir_(std::move(dir)), keep_(keep), nonce_(make_nonce()) {
  if (keep_ < 1) throw Error("", "--keep-checkpoints", "must be >= 1");
  if (exclusive) lock_ = std::make_unique<io::DirectoryLock>(dir_, "checkpoint directory");
}

CheckpointStore::~CheckpointStore() = default;
CheckpointStore::CheckpointStore(CheckpointStore&&) noexcept = default;
CheckpointStore& CheckpointStore::operator=(CheckpointStore&&) noexcept = default;

std::string CheckpointStore::write(int64_t step, const std::map<std::string, std::string>& files) {
  io::ensure_dir(dir_, "the checkpoint directory");
  const fs::path final_path = fs::path(dir_) / checkpoint_name(step);
  // Hidden while incomplete, and named by this store's nonce so no other writer's temporary is touched.
  const fs::path tmp = fs::path(dir_) / fmt::format(".{}.{}{}", checkpoint_name(step), nonce_, kTmpSuffix);
  std::error_code ec;
  fs::remove_all(tmp, ec);
  if (!fs::create_directory(tmp, ec) || ec) {
    throw Error(tmp.string(), "", "cannot create the checkpoint: " + (ec ? ec.message() : "exists"));
  }
  kill_point(1);
  try {
    nlohmann::json manifest = {{"step", step}, {"files", nlohmann::json::object()}};
    for (const auto& [name, bytes] : files) {
      if (name.empty() || name.find('/') != std::string::npos || name == kManifest) {
        throw Error(tmp.string(), name, "invalid checkpoint file name");
      }
      // Plain synced files: the directory is the unit made visible (by its rename), not each file.
      io::write_file_synced((tmp / name).string(), bytes);
      manifest["files"][name] = {{"size", bytes.size()}, {"crc32", crc32_hex(bytes)}};
      kill_point(2);
    }
    kill_point(3);
    // The manifest last: a directory without one is never taken for a checkpoint.
    io::write_file_synced((tmp / kManifest).string(), manifest.dump(2) + "\n");
    fsync_path(tmp, O_RDONLY | O_DIRECTORY);
    kill_point(4);
    fs::remove_all(final_path, ec);  // a leftover of an earlier run at the same step
    fs::rename(tmp, final_path, ec);
    if (ec) throw Error(final_path.string(), "", "cannot commit the checkpoint: " + ec.message());
    fsync_path(dir_, O_RDONLY | O_DIRECTORY);
    kill_point(5);
  } catch (...) {
    fs::remove_all(tmp, ec);
    throw;
  }
  prune(final_path.string());
  kill_point(6);
  return final_path.string();
}

// Only now that the new checkpoint is complete: the newest `keep_` stay, and so does the newest checkpoint
// that verifies, should every newer one fail its checksums (`written`, committed just now from the bytes in
// hand, is not read back). Temporaries left by killed writers go too: ours, and, under the lock, any other
// (their writers are dead, or they would hold the lock).
void CheckpointStore::prune(const std::string& written) const {
  std::error_code ec;
  const std::vector<std::string> all = list();
  bool valid_seen = false;
  for (size_t i = 0; i < all.size(); ++i) {
    const bool first_valid = !valid_seen && (all[i] == written || verify(all[i], nullptr).empty());
    valid_seen = valid_seen || first_valid;
    if (i < static_cast<size_t>(keep_)) continue;
    if (first_valid) {
      spdlog::warn("[ckpt] keeping {}: every newer checkpoint fails verification", all[i]);
      continue;
    }
    fs::remove_all(all[i], ec);
  }
  for (const auto& entry : fs::directory_iterator(dir_, ec)) {
    const std::string name = entry.path().filename().string();
    const bool temporary = name.rfind(std::string(".") + kPrefix, 0) == 0 && name.size() > std::strlen(kTmpSuffix) &&
                           name.compare(name.size() - std::strlen(kTmpSuffix), std::string::npos, kTmpSuffix) == 0;
    const bool ours = name.find("." + nonce_ + kTmpSuffix) != std::string::npos;
    if (temporary && (ours || lock_)) fs::remove_all(entry.path(), ec);
  }
}

std::vector<std::string> CheckpointStore::list() const {
  std::vector<std::string> out;
  std::error_code ec;
  if (!fs::is_directory(dir_, ec)) return out;
  for (const auto& entry : fs::directory_iterator(dir_, ec)) {
    const std::string name = entry.path().filename().string();
    const std::string number = name.rfind(kPrefix, 0) == 0 ? name.substr(std::string(kPrefix).size()) : "";
    const bool numbered =
        !number.empty() && std::all_of(number.begin(), number.end(), [](unsigned char c) { return std::isdigit(c); });
    if (numbered && entry.is_directory(ec) && fs::exists(entry.path() / kManifest, ec)) {
      out.push_back(entry.path().string());
    }
  }
  std::sort(out.rbegin(), out.rend());  // zero-padded step numbers: lexical order is step order
  return out;
}

std::optional<int64_t> CheckpointStore::newest_step() const {
  const std::vector<std::string> all = list();
  if (all.empty()) return std::nullopt;
  const std::string name = fs::path(all[0]).filename().string();
  return std::stoll(name.substr(std::string(kPrefix).size()));
}

std::optional<Checkpoint> CheckpointStore::load_latest() const {
  for (const std::string& path : list()) {
    Checkpoint c;
    c.path = path;
    const std::string why = verify(path, &c);
    if (why.empty()) return c;
    spdlog::warn("[ckpt] {} is unusable ({}); falling back to an older checkpoint", path, why);
  }
  return std::nullopt;
}

}  // namespace mil
