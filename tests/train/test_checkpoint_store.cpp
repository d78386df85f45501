// Checkpoint directories: atomic commit, K-retention, fallback past a truncated or corrupt newest one,
// and a failed write that leaves the previous checkpoint valid.
#include <gtest/gtest.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <csignal>
#include <filesystem>

#include "mil/io/files.hpp"
#include "mil/train/checkpoint_store.hpp"
#include "mil/util/error.hpp"
#include "tests/test_util.hpp"

namespace mil {
namespace {

namespace fs = std::filesystem;

std::map<std::string, std::string> files_for(int64_t step) {
  return {{"model.pt", std::string(1000 + step, static_cast<char>('a' + step % 26))},
          {"state.json", "{\"step\": " + std::to_string(step) + "}"}};
}

TEST(CheckpointStore, WritesAndLoadsTheNewest) {
  test::TempDir dir;
  CheckpointStore store(dir.file("ckpt"));
  EXPECT_FALSE(store.load_latest().has_value());
  store.write(5, files_for(5));
  store.write(12, files_for(12));
  const auto c = store.load_latest();
  ASSERT_TRUE(c.has_value());
  EXPECT_EQ(c->step, 12);
  EXPECT_EQ(c->files, files_for(12));
  // Nothing temporary is left beside the checkpoints.
  for (const auto& e : fs::directory_iterator(dir.file("ckpt"))) {
    EXPECT_EQ(e.path().filename().string().rfind("ckpt-", 0), 0u) << e.path();
  }
}

TEST(CheckpointStore, KeepsTheNewestK) {
  test::TempDir dir;
  CheckpointStore store(dir.file("ckpt"), 2);
  for (int64_t s : {1, 2, 3, 4}) store.write(s, files_for(s));
  const auto all = store.list();
  ASSERT_EQ(all.size(), 2u);
  EXPECT_NE(all[0].find("ckpt-000000000004"), std::string::npos);
  EXPECT_NE(all[1].find("ckpt-000000000003"), std::string::npos);
}

TEST(CheckpointStore, TruncatedNewestFallsBackToThePrevious) {
  test::TempDir dir;
  CheckpointStore store(dir.file("ckpt"), 3);
  store.write(1, files_for(1));
  const std::string newest = store.write(2, files_for(2));
  const std::string model = newest + "/model.pt";
  const std::string bytes = io::read_file(model);
  fs::resize_file(model, bytes.size() / 2);
  const auto c = store.load_latest();
  ASSERT_TRUE(c.has_value());
  EXPECT_EQ(c->step, 1);
  EXPECT_EQ(c->files, files_for(1));
}

TEST(CheckpointStore, CorruptNewestFallsBackToThePrevious) {
  test::TempDir dir;
  CheckpointStore store(dir.file("ckpt"), 3);
  store.write(1, files_for(1));
  const std::string newest = store.write(2, files_for(2));
  std::string bytes = io::read_file(newest + "/state.json");
  bytes[3] ^= 0x20;  // same size, different content
  io::write_file_atomically(newest + "/state.json", bytes);
  const auto c = store.load_latest();
  ASSERT_TRUE(c.has_value());
  EXPECT_EQ(c->step, 1);
}

TEST(CheckpointStore, DirectoryWithoutManifestIsNotACheckpoint) {
  test::TempDir dir;
  CheckpointStore store(dir.file("ckpt"));
  store.write(1, files_for(1));
  fs::create_directories(dir.file("ckpt/ckpt-000000000009"));  // what a crash mid-write could leave
  io::write_file_atomically(dir.file("ckpt/ckpt-000000000009/model.pt"), "partial");
  EXPECT_EQ(store.list().size(), 1u);
  EXPECT_EQ(store.load_latest()->step, 1);
}

TEST(CheckpointStore, FailedWriteKeepsThePreviousCheckpoint) {
  test::TempDir dir;
  CheckpointStore store(dir.file("ckpt"));
  store.write(1, files_for(1));
  // A file-size limit makes write() fail with EFBIG, as a full disk fails with ENOSPC (and it binds root
  // too). It runs in a child so the limit does not outlive the test.
  const pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    std::signal(SIGXFSZ, SIG_IGN);
    const rlimit limit{500, 500};
    setrlimit(RLIMIT_FSIZE, &limit);
    try {
      store.write(2, files_for(2));
      _exit(1);  // the write should have failed
    } catch (const Error& e) {
      _exit(std::string(e.what()).find("write failed") != std::string::npos ? 0 : 2);
    }
    _exit(3);
  }
  int status = 0;
  waitpid(pid, &status, 0);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0) << "1: write succeeded, 2: unclear message, 3: other exception";
  const auto c = store.load_latest();
  ASSERT_TRUE(c.has_value());
  EXPECT_EQ(c->step, 1);
  EXPECT_EQ(c->files, files_for(1));
  EXPECT_EQ(store.list().size(), 1u);
  for (const auto& e : fs::directory_iterator(dir.file("ckpt"))) {
    EXPECT_EQ(e.path().filename().string().rfind("ckpt-", 0), 0u) << "left behind: " << e.path();
  }
}

// Ownership: one job per directory. A second exclusive store is refused at once, naming the directory and
// the holder; a holder killed with SIGKILL leaves the directory free.
TEST(CheckpointStore, ASecondJobOnTheDirectoryIsRefusedUntilTheFirstDies) {
  test::TempDir dir;
  const std::string ckpt = dir.file("ckpt");
  int ready[2];
  ASSERT_EQ(pipe(ready), 0);
  const pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    CheckpointStore first(ckpt, 2, true);
    first.write(1, files_for(1));
    (void)!write(ready[1], "x", 1);
    pause();  // until SIGKILL
    _exit(0);
  }
  char c;
  ASSERT_EQ(read(ready[0], &c, 1), 1);
  const auto t0 = std::chrono::steady_clock::now();
  try {
    CheckpointStore second(ckpt, 2, true);
    ADD_FAILURE() << "a second job took a locked checkpoint directory";
  } catch (const Error& e) {
    EXPECT_EQ(e.file(), ckpt);
    EXPECT_NE(e.reason().find("in use by another running job (host "), std::string::npos) << e.what();
    EXPECT_NE(e.reason().find("pid " + std::to_string(pid)), std::string::npos) << e.what();
  }
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(2));
  kill(pid, SIGKILL);
  waitpid(pid, nullptr, 0);
  CheckpointStore after(ckpt, 2, true);  // the kernel released the dead job's lock
  EXPECT_EQ(after.load_latest()->step, 1);
}

// Another job's temporary directory (another nonce) is not ours to delete while its writer may live; under
// the lock it is a dead writer's leftover.
TEST(CheckpointStore, PruningLeavesOtherWritersTemporariesUnlessLocked) {
  test::TempDir dir;
  const std::string ckpt = dir.file("ckpt");
  fs::create_directories(ckpt + "/.ckpt-000000000009.0123456789abcdef.tmp");
  CheckpointStore shared(ckpt, 2);
  shared.write(1, files_for(1));
  EXPECT_TRUE(fs::exists(ckpt + "/.ckpt-000000000009.0123456789abcdef.tmp"));
  CheckpointStore owner(ckpt, 2, true);
  owner.write(2, files_for(2));
  EXPECT_FALSE(fs::exists(ckpt + "/.ckpt-000000000009.0123456789abcdef.tmp"));
}

TEST(CheckpointStore, PruningKeepsTheNewestValidCheckpointWhenNewerOnesAreCorrupt) {
  test::TempDir dir;
  CheckpointStore store(dir.file("ckpt"), 1);
  const std::string five = store.write(5, files_for(5));
  fs::resize_file(five + "/model.pt", 10);  // the newest is truncated (a partial S3 restore, a bad disk)
  store.write(3, files_for(3));             // keep = 1 would keep only the corrupt 5
  EXPECT_EQ(store.list().size(), 2u);
  const auto c = store.load_latest();
  ASSERT_TRUE(c.has_value());
  EXPECT_EQ(c->step, 3);
  // Once a newer valid checkpoint exists, the corrupt and the old ones go.
  store.write(6, files_for(6));
  ASSERT_EQ(store.list().size(), 1u);
  EXPECT_EQ(store.load_latest()->step, 6);
}

// Crash injection: the writer is killed (SIGKILL) at each stage of a commit; the checkpoint loaded afterwards
// is the last complete one, and the next writer commits and cleans up normally.
TEST(CheckpointStore, AWriterKilledAtAnyStageLeavesTheLastCompleteCheckpoint) {
  for (int stage = 1; stage <= 6; ++stage) {
    SCOPED_TRACE("killed at stage " + std::to_string(stage));
    test::TempDir dir;
    const std::string ckpt = dir.file("ckpt");
    {
      CheckpointStore store(ckpt, 2, true);
      store.write(1, files_for(1));
      store.write(2, files_for(2));
    }
    const pid_t pid = fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      set_checkpoint_kill_stage_for_testing(stage);
      CheckpointStore store(ckpt, 2, true);
      store.write(3, files_for(3));
      _exit(0);  // not reached: killed at `stage`
    }
    int status = 0;
    waitpid(pid, &status, 0);
    ASSERT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
    CheckpointStore next(ckpt, 2, true);  // the dead writer's lock is gone
    const auto c = next.load_latest();
    ASSERT_TRUE(c.has_value());
    EXPECT_EQ(c->step, stage >= 5 ? 3 : 2);  // committed once renamed into place
    EXPECT_EQ(c->files, files_for(c->step));
    next.write(4, files_for(4));
    EXPECT_EQ(next.load_latest()->step, 4);
    EXPECT_EQ(next.list().size(), 2u);
    for (const auto& e : fs::directory_iterator(ckpt)) {
      const std::string name = e.path().filename().string();
      EXPECT_TRUE(name.rfind("ckpt-", 0) == 0 || name == ".dsmil.lock") << "left behind: " << name;
    }
  }
}

TEST(CheckpointStore, ChecksumIsZlibCrc32) {
  EXPECT_EQ(crc32_hex("123456789"), "cbf43926");  // the standard CRC-32 check value
  EXPECT_EQ(crc32_hex(""), "00000000");
}

}  // namespace
}  // namespace mil
