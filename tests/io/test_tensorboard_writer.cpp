// TensorBoard event files: the TFRecord framing read back byte by byte (lengths, both masked CRC32Cs, nothing
// after the last record), the Event protos inside, the file name, errors naming the path, and where
// --tensorboard-dir points by default. tests/e2e/tensorboard.sh reads a training run's file with TensorBoard.
#include <gtest/gtest.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <csignal>
#include <filesystem>
#include <fstream>
#include <optional>
#include <regex>
#include <string>
#include <vector>

#include "mil/config/train_config.hpp"
#include "mil/data/synthetic.hpp"
#include "mil/dist/communicator.hpp"
#include "mil/io/files.hpp"
#include "mil/io/tensorboard_event.pb.h"
#include "mil/io/tensorboard_writer.hpp"
#include "mil/train/checkpoint_state.hpp"
#include "mil/train/trainer.hpp"
#include "mil/util/error.hpp"
#include "tests/test_util.hpp"

namespace mil {
namespace {

namespace fs = std::filesystem;

uint64_t read_le(const std::string& bytes, size_t pos, int n) {
  uint64_t v = 0;
  for (int i = 0; i < n; ++i) v |= uint64_t{static_cast<unsigned char>(bytes[pos + i])} << (8 * i);
  return v;
}

// Every record of a TFRecord file, each CRC checked, each payload parsed as an Event.
::testing::AssertionResult read_events(const std::string& path, std::vector<dsmil::tb::Event>* events) {
  const std::string bytes = io::read_file(path);
  size_t pos = 0;
  while (pos < bytes.size()) {
    const size_t record = events->size();
    if (bytes.size() - pos < 12) return ::testing::AssertionFailure() << "record " << record << ": truncated header";
    const uint64_t length = read_le(bytes, pos, 8);
    const uint32_t length_crc = static_cast<uint32_t>(read_le(bytes, pos + 8, 4));
    if (length_crc != io::masked_crc32c(bytes.substr(pos, 8))) {
      return ::testing::AssertionFailure() << "record " << record << ": bad length CRC";
    }
    pos += 12;
    if (bytes.size() - pos < length + 4) return ::testing::AssertionFailure() << "record " << record << ": truncated";
    const std::string data = bytes.substr(pos, length);
    if (static_cast<uint32_t>(read_le(bytes, pos + length, 4)) != io::masked_crc32c(data)) {
      return ::testing::AssertionFailure() << "record " << record << ": bad data CRC";
    }
    pos += length + 4;
    dsmil::tb::Event event;
    if (!event.ParseFromString(data)) return ::testing::AssertionFailure() << "record " << record << ": not an Event";
    events->push_back(std::move(event));
  }
  return ::testing::AssertionSuccess();
}

std::vector<std::string> files_in(const std::string& dir) {
  std::vector<std::string> out;
  for (const auto& e : fs::directory_iterator(dir)) out.push_back(e.path().string());
  std::sort(out.begin(), out.end());
  return out;
}

// CRC32C check values (the "123456789" value of the CRC catalogue and RFC 3720's zeros and ones), masked here
// by hand, so the CRC is checked independently of the framing tests below that use masked_crc32c.
TEST(TensorBoardWriter, MaskedCrc32cKnownAnswers) {
  const auto mask = [](uint32_t crc) { return ((crc >> 15) | (crc << 17)) + 0xa282ead8u; };
  EXPECT_EQ(io::masked_crc32c("123456789"), mask(0xe3069283u));
  EXPECT_EQ(io::masked_crc32c(std::string(32, '\0')), mask(0x8a9136aau));
  EXPECT_EQ(io::masked_crc32c(std::string(32, '\xff')), mask(0x62a8ab43u));
  EXPECT_EQ(io::masked_crc32c(""), 0xa282ead8u);
}

TEST(TensorBoardWriter, RecordsAreFramedAndHoldTheScalars) {
  const test::TempDir tmp;
  const std::string dir = tmp.file("runs/tb");  // created with its parent
  const double before = std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
  std::string path;
  {
    io::TensorBoardWriter tb(dir);
    path = tb.path();
    tb.add_scalar("train/loss", 0.6931, 1);
    tb.add_scalar("val/accuracy", 0.0, 1);  // a zero must still be written (proto3 would drop a plain float 0)
    tb.add_scalar("fold_2/train/lr", 2e-4, 2);
    tb.add_scalar("train/instances_per_second", -12345.5, 3);
    tb.flush();
  }
  ASSERT_EQ(files_in(dir), std::vector<std::string>{path});
  char host[256] = {};
  ASSERT_EQ(gethostname(host, sizeof(host) - 1), 0);
  const std::string name = fs::path(path).filename().string();
  std::smatch m;
  ASSERT_TRUE(std::regex_match(name, m, std::regex(R"(events\.out\.tfevents\.(\d{10,})\.(.+))"))) << name;
  EXPECT_EQ(m[2].str(), host);
  EXPECT_NEAR(std::stod(m[1].str()), before, 5);

  std::vector<dsmil::tb::Event> events;
  ASSERT_TRUE(read_events(path, &events));
  ASSERT_EQ(events.size(), 5u);
  EXPECT_EQ(events[0].file_version(), "brain.Event:2");
  EXPECT_EQ(events[0].what_case(), dsmil::tb::Event::kFileVersion);
  struct Expected {
    const char* tag;
    float value;
    int64_t step;
  };
  const Expected expected[] = {{"train/loss", 0.6931f, 1},
                               {"val/accuracy", 0.0f, 1},
                               {"fold_2/train/lr", 2e-4f, 2},
                               {"train/instances_per_second", -12345.5f, 3}};
  for (size_t i = 0; i < 4; ++i) {
    const dsmil::tb::Event& e = events[i + 1];
    SCOPED_TRACE(expected[i].tag);
    ASSERT_EQ(e.what_case(), dsmil::tb::Event::kSummary);
    ASSERT_EQ(e.summary().value_size(), 1);
    const dsmil::tb::Summary::Value& v = e.summary().value(0);
    EXPECT_EQ(v.tag(), expected[i].tag);
    EXPECT_TRUE(v.has_simple_value());
    EXPECT_EQ(v.simple_value(), expected[i].value);  // float32, exactly
    EXPECT_EQ(e.step(), expected[i].step);
    EXPECT_GE(e.wall_time(), before - 1);
    EXPECT_GE(e.wall_time(), events[i].wall_time());
  }
}

TEST(TensorBoardWriter, FlushMakesRecordsVisibleWhileTheFileIsOpen) {
  const test::TempDir tmp;
  io::TensorBoardWriter tb(tmp.path());
  tb.add_scalar("train/loss", 1.5, 1);
  tb.flush();
  std::vector<dsmil::tb::Event> events;
  ASSERT_TRUE(read_events(tb.path(), &events));
  ASSERT_EQ(events.size(), 2u);
  EXPECT_EQ(events[1].summary().value(0).simple_value(), 1.5f);
}

TEST(TensorBoardWriter, TwoWritersInOneSecondGetTwoFiles) {
  const test::TempDir tmp;
  io::TensorBoardWriter a(tmp.path());
  io::TensorBoardWriter b(tmp.path());
  EXPECT_NE(a.path(), b.path());
  EXPECT_EQ(files_in(tmp.path()).size(), 2u);
}

TEST(TensorBoardWriter, ErrorsNameThePath) {
  const test::TempDir tmp;
  const std::string blocker = tmp.file("not_a_dir");
  std::ofstream(blocker) << "x";
  try {
    io::TensorBoardWriter tb(blocker + "/tb");
    FAIL() << "no error for a directory under a file";
  } catch (const Error& e) {
    EXPECT_EQ(e.file(), blocker + "/tb");
    EXPECT_NE(std::string(e.what()).find("TensorBoard"), std::string::npos) << e.what();
  }
}

// --tensorboard-dir: the SageMaker path in a job, next to the metrics elsewhere, "none" turns it off, and it is
// an output place, not a training setting that a checkpoint must match.
TEST(TensorBoardConfig, DefaultsAndOff) {
  const test::TempDir root;
  SageMakerEnvironment job;
  job.root = root.path();
  job.getenv = [](const std::string&) { return std::nullopt; };
  SageMakerEnvironment local = job;
  local.root = root.file("absent");

  EXPECT_EQ(parse_train_config({}, job).config.tensorboard_dir, root.file("output/tensorboard"));
  EXPECT_EQ(parse_train_config({"--output-dir", "/o"}, local).config.tensorboard_dir, "/o/tensorboard");
  EXPECT_EQ(parse_train_config({}, local).config.tensorboard_dir, "output/tensorboard");
  const TrainConfig given = parse_train_config({"--tensorboard_dir", "/tb"}, job).config;
  EXPECT_EQ(given.tensorboard_dir, "/tb");
  EXPECT_TRUE(tensorboard_enabled(given));
  const TrainConfig off = parse_train_config({"--tensorboard-dir", "none"}, job).config;
  EXPECT_EQ(off.tensorboard_dir, "none");  // kept as "none", so --dump-config reads back as off
  EXPECT_FALSE(tensorboard_enabled(off));
  EXPECT_FALSE(tensorboard_enabled(TrainConfig{}));
  EXPECT_EQ(to_json(given)["tensorboard-dir"], "/tb");
  EXPECT_FALSE(training_settings(given).contains("tensorboard-dir"));
}

// A training job's TensorBoard events are best effort: a failure is a warning, and training goes on.
TEST(TensorBoardLog, ADirectoryThatCannotBeMadeTurnsTheEventsOff) {
  const test::TempDir tmp;
  std::ofstream(tmp.file("blocker")) << "x";
  io::TensorBoardLog tb(tmp.file("blocker/tb"));
  EXPECT_FALSE(tb.enabled());
  tb.add_scalar("train/loss", 1.0, 1);
  tb.flush();
}

TEST(TensorBoardLog, AWriteFailureTurnsTheEventsOff) {
  const test::TempDir tmp;
  // A file-size limit (as a full disk) makes the flush fail; in a child, so the limit dies with it.
  const pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    std::signal(SIGXFSZ, SIG_IGN);
    io::TensorBoardLog tb(tmp.path());
    if (!tb.enabled()) _exit(2);
    const rlimit limit{200, 200};
    setrlimit(RLIMIT_FSIZE, &limit);
    try {
      for (int i = 0; i < 100; ++i) tb.add_scalar("train/loss", 1.0, i);
      tb.flush();
      _exit(tb.enabled() ? 3 : 0);
    } catch (...) {
      _exit(1);
    }
  }
  int status = 0;
  waitpid(pid, &status, 0);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0) << "1: threw, 2: could not start, 3: still enabled after a failed write";
}

// --tensorboard-dir under a file used to end the job; now it trains and writes its model.
TEST(TensorBoardLog, TrainingGoesOnWithoutTensorBoard) {
  const test::TempDir tmp;
  SyntheticOptions o;
  o.num_bags = 8;
  o.feature_dim = 4;
  o.log_mean_instances = 2;
  write_synthetic_channel(tmp.file("train"), o);
  std::ofstream(tmp.file("blocker")) << "x";
  TrainConfig cfg;
  cfg.train_dir = tmp.file("train");
  cfg.labels = tmp.file("train/labels.csv");
  cfg.model_dir = tmp.file("model");
  cfg.output_dir = tmp.file("output");
  cfg.checkpoint_dir = tmp.file("ckpt");
  cfg.tensorboard_dir = tmp.file("blocker/tb");
  cfg.epochs = 1;
  cfg.log_level = "error";
  LocalCommunicator comm;
  EXPECT_NO_THROW(run_training(cfg, comm));
  EXPECT_TRUE(fs::exists(tmp.file("model/model.pt")));
}

}  // namespace
}  // namespace mil
