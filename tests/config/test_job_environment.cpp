// The SageMaker job layouts dsmil_train refuses before training: several hosts without MPI, and a channel
// sharded by S3 key. Each error names the file and what to change; absent files are not checked.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <string>

#include "mil/config/job_environment.hpp"
#include "mil/util/error.hpp"
#include "tests/test_util.hpp"

namespace mil {
namespace {

namespace fs = std::filesystem;

class JobEnvironment : public ::testing::Test {
 protected:
  void SetUp() override {
    fs::create_directories(dir_.file("input/config"));
    env_.root = dir_.path();
  }
  void write(const std::string& name, const std::string& text) const {
    std::ofstream(dir_.file("input/config/" + name)) << text;
  }
  // The mil::Error check_job_environment throws for this world size, or "" when it passes.
  std::string error(int world_size) const {
    return test::error_message([&] { check_job_environment(env_, world_size); });
  }

  test::TempDir dir_;
  SageMakerEnvironment env_;
};

const char* kTwoHosts =
    R"({"current_host": "algo-1", "hosts": ["algo-1", "algo-2"], "network_interface_name": "eth0"})";

TEST_F(JobEnvironment, NoConfigFilesPass) {
  EXPECT_EQ(error(1), "");
  env_.root = "/nonexistent/dsmil/opt/ml";
  EXPECT_EQ(error(1), "");
}

TEST_F(JobEnvironment, SeveralHostsNeedMpi) {
  write("resourceconfig.json", kTwoHosts);
  const std::string msg = error(1);
  EXPECT_NE(msg.find("resourceconfig.json"), std::string::npos) << msg;
  EXPECT_NE(msg.find("2 hosts (algo-1, algo-2)"), std::string::npos) << msg;
  EXPECT_NE(msg.find("mpi distribution"), std::string::npos) << msg;
  EXPECT_EQ(error(8), "");  // one rank of an MPI job over both hosts
}

TEST_F(JobEnvironment, OneHostRunsAlone) {
  write("resourceconfig.json", R"({"current_host": "algo-1", "hosts": ["algo-1"]})");
  EXPECT_EQ(error(1), "");
  EXPECT_EQ(error(4), "");
}

TEST_F(JobEnvironment, ShardedChannelIsNamed) {
  write("inputdataconfig.json", R"({"train": {"TrainingInputMode": "File", "S3DistributionType": "FullyReplicated"},
                                    "validation": {"TrainingInputMode": "FastFile",
                                                   "S3DistributionType": "ShardedByS3Key"}})");
  for (int world : {1, 4}) {
    const std::string msg = error(world);
    EXPECT_NE(msg.find("inputdataconfig.json"), std::string::npos) << msg;
    EXPECT_NE(msg.find("channel 'validation' is ShardedByS3Key"), std::string::npos) << msg;
    EXPECT_NE(msg.find("FullyReplicated"), std::string::npos) << msg;
    EXPECT_EQ(msg.find("'train'"), std::string::npos) << msg;
  }
  write("inputdataconfig.json", R"({"train": {"S3DistributionType": "FullyReplicated"}, "test": {}})");
  EXPECT_EQ(error(1), "");
}

TEST_F(JobEnvironment, MalformedConfigNamesTheFile) {
  write("resourceconfig.json", "{not json");
  EXPECT_NE(error(1).find("resourceconfig.json"), std::string::npos);
}

}  // namespace
}  // namespace mil
