// Which transport --comm picks, and that a --comm which cannot work on this machine or build is refused
// before MPI starts (so no rank waits for another in a store). Runs in both builds on a machine without a
// GPU; a GPU machine skips the expectations that need none.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <string>

#include "mil/dist/c10d_communicator.hpp"
#include "mil/dist/communicator.hpp"
#include "tests/test_util.hpp"

namespace mil {
namespace {

TEST(ChooseTransport, MpiAndAutoOnTheCpu) {
  EXPECT_EQ(choose_transport("mpi", "cpu"), Transport::kMpi);
  EXPECT_EQ(choose_transport("mpi", "auto"), Transport::kMpi);
  EXPECT_EQ(choose_transport("auto", "cpu"), Transport::kMpi);  // even where a GPU and NCCL are there
  if (torch::cuda::is_available()) GTEST_SKIP() << "a GPU is visible";
  EXPECT_EQ(choose_transport("auto", "auto"), Transport::kMpi);
}

TEST(ChooseTransport, NcclWithoutAGpuIsRefusedNamingTheOption) {
  EXPECT_TRUE(test::throws_error_naming([] { choose_transport("nccl", "cpu"); }, {"--comm nccl"}));
  if (torch::cuda::is_available()) GTEST_SKIP() << "a GPU is visible";
  // The CUDA build on a machine without a GPU (CI): NCCL is in the build, the GPU is not.
  const std::vector<std::string> why = c10d_backend_available(C10dBackend::kNccl)
                                           ? std::vector<std::string>{"needs a GPU", "CUDA sees none"}
                                           : std::vector<std::string>{"no c10d nccl"};
  for (const char* device : {"auto", "cuda", "cuda:1"}) {
    EXPECT_TRUE(test::throws_error_naming([&] { choose_transport("nccl", device); }, why, "--comm nccl")) << device;
  }
}

TEST(ChooseTransport, GlooWhenTheBuildHasIt) {
  if (c10d_backend_available(C10dBackend::kGloo)) {
    EXPECT_EQ(choose_transport("gloo", "cpu"), Transport::kGloo);
  } else {
    EXPECT_TRUE(test::throws_error_naming([] { choose_transport("gloo", "cpu"); }, {"no c10d gloo", "--comm mpi"}));
  }
  EXPECT_TRUE(test::throws_error_naming([] { choose_transport("tcp", "cpu"); }, {"--comm", "'tcp'"}));
}

}  // namespace
}  // namespace mil
