// One GPU per rank on a host, with the GPU count injected: the rule resolve_device and --comm nccl follow.
#include <gtest/gtest.h>

#include <string>

#include "mil/util/device.hpp"
#include "mil/util/error.hpp"
#include "tests/test_util.hpp"

namespace mil {
namespace {

std::string error_of(int local_rank, int local_size, int gpus) {
  return test::error_message([&] { gpu_for_local_rank(local_rank, local_size, gpus); });
}

TEST(GpuAssignment, EachLocalRankGetsItsOwnGpu) {
  // A g5.12xlarge (4 GPUs): 4 ranks use GPUs 0..3; 2 ranks use 0 and 1; one process uses GPU 0.
  for (int r = 0; r < 4; ++r) EXPECT_EQ(gpu_for_local_rank(r, 4, 4), r);
  EXPECT_EQ(gpu_for_local_rank(1, 2, 4), 1);
  EXPECT_EQ(gpu_for_local_rank(0, 1, 8), 0);
}

TEST(GpuAssignment, MoreRanksThanGpusIsRefusedNamingBothCounts) {
  // Every rank of the host fails alike, rank 0 included (not only the ones past the last GPU).
  for (int r = 0; r < 5; ++r) {
    const std::string msg = error_of(r, 5, 4);
    EXPECT_NE(msg.find("5 ranks on this host but only 4 GPU(s)"), std::string::npos) << msg;
    EXPECT_NE(msg.find("--device"), std::string::npos) << msg;
  }
  EXPECT_NE(error_of(0, 1, 0).find("this host has none"), std::string::npos);
  EXPECT_NE(error_of(2, 2, 2).find("local rank 2 outside [0, 2)"), std::string::npos);
}

TEST(ResolveDevice, CpuAlwaysAndAutoWithoutAGpu) {
  EXPECT_EQ(resolve_device("cpu", 3, 8), torch::Device(torch::kCPU));
  EXPECT_FALSE(device_is_cuda("cpu"));
  if (torch::cuda::is_available()) GTEST_SKIP() << "a GPU is visible: the CPU-only expectations do not apply";
  // The CUDA build on a machine without a GPU (CI): auto is the CPU, whatever the rank counts; cuda is refused.
  EXPECT_EQ(resolve_device("auto", 1, 2), torch::Device(torch::kCPU));
  EXPECT_FALSE(device_is_cuda("auto"));
  EXPECT_FALSE(device_is_cuda("cuda:1"));
  EXPECT_TRUE(test::throws_error_naming([] { resolve_device("cuda", 0, 1); }, {"--device", "CUDA is not available"}));
}

}  // namespace
}  // namespace mil
