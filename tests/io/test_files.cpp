// Start-up checks of the places a job writes: a file where a directory is expected, a directory the job may
// not write in and a full disk are errors naming the directory before any training.
#include <grp.h>
#include <gtest/gtest.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <csignal>
#include <filesystem>
#include <fstream>
#include <functional>

#include "mil/data/synthetic.hpp"
#include "mil/dist/communicator.hpp"
#include "mil/io/files.hpp"
#include "mil/train/trainer.hpp"
#include "mil/util/error.hpp"
#include "tests/test_util.hpp"

namespace mil {
namespace {

namespace fs = std::filesystem;

using test::error_message;

// Runs `f` in a forked child (after `setup` there) and returns its exit status: 0 when f threw a mil::Error
// holding `expected`, 1 when it did not throw, 2 for another message.
int child_status(const std::function<void()>& setup, const std::function<void()>& f, const std::string& expected) {
  const pid_t pid = fork();
  if (pid == 0) {
    setup();
    const std::string msg = error_message(f);
    _exit(msg.empty() ? 1 : (msg.find(expected) != std::string::npos ? 0 : 2));
  }
  int status = 0;
  waitpid(pid, &status, 0);
  return WIFEXITED(status) ? WEXITSTATUS(status) : 100 + WTERMSIG(status);
}

TEST(EnsureWritableDirectories, CreatesMissingDirectoriesAndLeavesNoProbe) {
  test::TempDir tmp;
  io::ensure_writable_directories({{tmp.file("a/b/model"), "model directory"}, {tmp.file("out"), "output directory"}});
  EXPECT_TRUE(fs::is_directory(tmp.file("a/b/model")));
  EXPECT_TRUE(fs::is_empty(tmp.file("a/b/model")));
  EXPECT_TRUE(fs::is_empty(tmp.file("out")));
}

TEST(EnsureWritableDirectories, AFileWhereADirectoryIsExpected) {
  test::TempDir tmp;
  std::ofstream(tmp.file("ckpt")) << "x";
  const std::string msg = error_message([&] {
    io::ensure_writable_directories({{tmp.file("ckpt"), "checkpoint directory"}});
  });
  EXPECT_EQ(msg, tmp.file("ckpt") + ": the checkpoint directory is a file, not a directory");
}

TEST(EnsureWritableDirectories, ADirectoryThisUserCannotWriteIn) {
  test::TempDir tmp;
  fs::create_directories(tmp.file("ro"));
  fs::permissions(tmp.path(), fs::perms::owner_all | fs::perms::others_read | fs::perms::others_exec);
  fs::permissions(tmp.file("ro"), fs::perms::owner_all | fs::perms::others_read | fs::perms::others_exec);
  // Root writes anywhere, so the check runs in a child that drops to user "nobody" (a read-only mount
  // fails the same way, with EROFS).
  const auto drop = [] {
    if (geteuid() == 0 && (setgroups(0, nullptr) != 0 || setgid(65534) != 0 || setuid(65534) != 0)) _exit(3);
  };
  EXPECT_EQ(child_status(
                drop,
                [&] {
                  io::ensure_writable_directories({{tmp.file("ro"), "model directory"}});
                },
                tmp.file("ro") + ": cannot write in the model directory: Permission denied"),
            0);
}

TEST(EnsureWritableDirectories, AFullDisk) {
  test::TempDir tmp;
  // A file-size limit fails writes with EFBIG as a full disk does with ENOSPC (and binds root too).
  const auto limit = [] {
    std::signal(SIGXFSZ, SIG_IGN);
    const rlimit l{4096, 4096};
    setrlimit(RLIMIT_FSIZE, &l);
  };
  EXPECT_EQ(child_status(
                limit,
                [&] {
                  io::ensure_writable_directories({{tmp.file("out"), "output directory"}});
                },
                tmp.file("out") + ": cannot write in the output directory (write failed"),
            0);
  EXPECT_TRUE(fs::is_empty(tmp.file("out")));  // the probe is removed even when it failed
}

// `--checkpoint-dir` naming a file used to be refused only at the first checkpoint, after an epoch of training.
TEST(EnsureWritableDirectories, TrainingRefusesABadCheckpointDirBeforeReadingData) {
  test::TempDir tmp;
  SyntheticOptions o;
  o.num_bags = 8;
  o.feature_dim = 4;
  o.log_mean_instances = 2;
  write_synthetic_channel(tmp.file("train"), o);
  std::ofstream(tmp.file("ckpt")) << "x";
  TrainConfig cfg;
  cfg.train_dir = tmp.file("train");
  cfg.labels = tmp.file("train/labels.csv");
  cfg.model_dir = tmp.file("model");
  cfg.output_dir = tmp.file("output");
  cfg.checkpoint_dir = tmp.file("ckpt");
  cfg.tensorboard_dir = tmp.file("output/tb");
  cfg.epochs = 2;
  cfg.log_level = "warn";
  LocalCommunicator comm;
  const std::string msg = error_message([&] { run_training(cfg, comm); });
  EXPECT_EQ(msg, tmp.file("ckpt") + ": the checkpoint directory is a file, not a directory");
  EXPECT_FALSE(fs::exists(tmp.file("output/tb")));  // nothing of the training started
}

// The writes behind checkpoints and model files: a full disk is an error naming the file, and neither a partial
// file nor (for the atomic write) the previous contents' loss is left behind.
TEST(WriteFile, SyncedReplacesTheContentsAndAFailedWriteLeavesNoPartialFile) {
  test::TempDir tmp;
  const std::string path = tmp.file("a.bin");
  io::write_file_synced(path, std::string(10000, 'x'));
  io::write_file_synced(path, "short");  // truncated, not overwritten in place
  EXPECT_EQ(io::read_file(path), "short");
  const auto limit = [] {
    std::signal(SIGXFSZ, SIG_IGN);
    const rlimit l{4096, 4096};
    setrlimit(RLIMIT_FSIZE, &l);
  };
  const std::string big(8192, 'y');
  EXPECT_EQ(child_status(
                limit, [&] { io::write_file_synced(tmp.file("b.bin"), big); }, tmp.file("b.bin") + ": write failed"),
            0);
  EXPECT_FALSE(fs::exists(tmp.file("b.bin")));
  EXPECT_EQ(child_status(
                limit, [&] { io::write_file_atomically(path, big); }, path + ": write failed"),
            0);
  EXPECT_EQ(io::read_file(path), "short");
  EXPECT_EQ(std::distance(fs::directory_iterator(tmp.path()), fs::directory_iterator{}), 1);  // no temporary
}

}  // namespace
}  // namespace mil
