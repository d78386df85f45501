// --threads 0: each process's share of the host's cores, within its binding; one thread for small steps.
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

// Small steps get one thread whatever the share; the boundary is kOneThreadStepWork (instances x D).
TEST(AutoThreads, SmallStepsTrainOnOneThread) {
  EXPECT_EQ(auto_thread_count_for_steps(2, 6.8, 200), 1);      // classical MIL: bags of 2-13 instances
  EXPECT_EQ(auto_thread_count_for_steps(2, 5.2, 166), 1);      // MUSK
  EXPECT_EQ(auto_thread_count_for_steps(16, 30, 512), 1);      // 15,360 < 16,384
  EXPECT_EQ(auto_thread_count_for_steps(2, 32, 512), 2);       // at the boundary
  EXPECT_EQ(auto_thread_count_for_steps(2, 1000, 512), 2);     // WSI-sized bags keep the share
  EXPECT_EQ(auto_thread_count_for_steps(2, 6.8 * 8, 512), 2);  // 8 tiny bags packed to a step
  EXPECT_EQ(auto_thread_count_for_steps(1, 1000, 512), 1);     // never more than the share
}

}  // namespace
}  // namespace mil
