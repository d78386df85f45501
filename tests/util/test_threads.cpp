// --threads 0: each process's share of the host's cores, within its binding.
#include <gtest/gtest.h>

#include "mil/util/threads.hpp"

namespace mil {
namespace {

TEST(AutoThreads, SmallSharesKeepEveryCore) {
  EXPECT_EQ(auto_thread_count(2, 1, 2), 2);  // this project's 2-core machine, one process
  EXPECT_EQ(auto_thread_count(2, 2, 0), 1);  // two ranks on it
  EXPECT_EQ(auto_thread_count(1, 1, 0), 1);
  EXPECT_EQ(auto_thread_count(4, 2, 0), 2);  // two ranks, two cores each
  EXPECT_EQ(auto_thread_count(2, 3, 0), 1);  // more ranks than cores: still one thread each
}

TEST(AutoThreads, LargerSharesKeepEveryCoreWithinTheBinding) {
  EXPECT_EQ(auto_thread_count(16, 1, 0), 16);
  EXPECT_EQ(auto_thread_count(16, 4, 0), 4);
  EXPECT_EQ(auto_thread_count(16, 1, 8), 8);  // bound to 8 cores
  EXPECT_EQ(auto_thread_count(16, 1, 1), 1);  // mpirun's one-core binding
  EXPECT_EQ(auto_thread_count(3, 0, 0), 3);   // an unknown rank count counts as one
}

}  // namespace
}  // namespace mil
