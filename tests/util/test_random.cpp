#include <gtest/gtest.h>

#include <stdexcept>

#include "mil/util/random.hpp"

namespace mil {
namespace {

TEST(SplitMix64, MatchesReferenceOutputs) {
  // First outputs of Vigna's splitmix64.c from state 0.
  SplitMix64 rng(0);
  EXPECT_EQ(rng.next(), 0xE220A8397B1DCDAFULL);
  EXPECT_EQ(rng.next(), 0x6E789E6AA1B965F4ULL);
  EXPECT_EQ(rng.next(), 0x06C45D188009454FULL);
}

TEST(SplitMix64, BoundedIsInRangeAndUnbiased) {
  SplitMix64 rng(7);
  for (int i = 0; i < 100; ++i) EXPECT_EQ(rng.bounded(1), 0u);
  EXPECT_THROW(rng.bounded(0), std::logic_error);  // a caller's bug, not a user's mistake
  // With bound = 3 * 2^62, plain `x % bound` returns a value below 2^62 half the time; unbiased is 1/3.
  const uint64_t bound = 3ULL << 62;
  int below = 0;
  const int draws = 30000;
  for (int i = 0; i < draws; ++i) {
    const uint64_t x = rng.bounded(bound);
    ASSERT_LT(x, bound);
    below += x < (1ULL << 62);
  }
  EXPECT_NEAR(static_cast<double>(below) / draws, 1.0 / 3.0, 0.015);
}

}  // namespace
}  // namespace mil
