#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <iostream>
#include <map>
#include <ostream>
#include <set>
#include <string>
#include <vector>

#include "mil/data/sampler.hpp"
#include "mil/util/error.hpp"
#include "tests/test_util.hpp"

namespace mil {
namespace {

constexpr double kPi = 3.14159265358979323846;

// round(exp(N(mu, sigma))) with N drawn by Box–Muller from SplitMix64, so the sizes are the same
// everywhere (up to libm rounding of log/cos/exp, far below what the balance bounds care about).
std::vector<int64_t> lognormal_sizes(int64_t n, double mu, double sigma, uint64_t seed) {
  SplitMix64 rng(seed);
  std::vector<int64_t> sizes;
  for (int64_t i = 0; i < n; ++i) {
    const double u1 = 1.0 - rng.uniform();  // (0, 1], so the log is finite
    const double u2 = rng.uniform();
    const double z = std::sqrt(-2.0 * std::log(u1)) * std::cos(2.0 * kPi * u2);
    sizes.push_back(std::llround(std::exp(mu + sigma * z)));
  }
  return sizes;
}

std::vector<int64_t> iota_sizes(int64_t n) {
  std::vector<int64_t> sizes(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) sizes[static_cast<size_t>(i)] = 100 + (i * 37) % 91;
  return sizes;
}

std::vector<int64_t> flatten(const std::vector<std::vector<int64_t>>& plan) {
  std::vector<int64_t> flat;
  for (const auto& step : plan) flat.insert(flat.end(), step.begin(), step.end());
  return flat;
}

template <typename Fn>
void expect_error(Fn fn, const std::string& object, const std::string& text) {
  EXPECT_TRUE(test::throws_error_naming(fn, {text}, object));
}

TEST(FisherYates, AllPermutationsEquallyLikely) {
  // Across 60000 epochs each of the 3! orders should come up ~10000 times (sd ~91). The classic
  // "swap with any position" mistake gives 8889 / 11111 and fails.
  EpochSampler sampler({1, 1, 1}, SamplerOptions{});
  std::map<std::vector<int64_t>, int> counts;
  for (int64_t epoch = 0; epoch < 60000; ++epoch) ++counts[sampler.permutation(epoch)];
  ASSERT_EQ(counts.size(), 6u);
  for (const auto& [perm, count] : counts) EXPECT_NEAR(count, 10000, 450);
}

TEST(EpochSampler, GoldenPermutation) {
  // Pins the generator, the seed derivation and the shuffle: a change here changes every run's bag
  // order, which breaks resuming checkpoints written by an older binary. Checked against an independent
  // Python implementation of the same derivation.
  EpochSampler sampler(iota_sizes(10), SamplerOptions{});
  EXPECT_EQ(sampler.permutation(0), (std::vector<int64_t>{8, 9, 3, 0, 7, 1, 5, 2, 6, 4}));
  EXPECT_EQ(sampler.permutation(1), (std::vector<int64_t>{0, 2, 4, 8, 1, 9, 6, 3, 7, 5}));
}

struct Shape {
  int64_t n;
  int world_size;
  int bucket_steps;
};

void PrintTo(const Shape& s, std::ostream* os) {
  *os << "{n " << s.n << ", W " << s.world_size << ", bucket_steps " << s.bucket_steps << "}";
}

class PlanShape : public ::testing::TestWithParam<std::tuple<Shape, bool>> {};

TEST_P(PlanShape, EqualStepsCoveringWithDocumentedPadding) {
  const auto [shape, balanced] = GetParam();
  SamplerOptions opts;
  opts.world_size = shape.world_size;
  opts.size_balanced = balanced;
  opts.bucket_steps = shape.bucket_steps;
  EpochSampler sampler(iota_sizes(shape.n), opts);
  const int64_t w = shape.world_size;
  const int64_t steps = (shape.n + w - 1) / w;
  ASSERT_EQ(sampler.steps_per_epoch(), steps);

  for (int64_t epoch : {0, 1, 7}) {
    const auto plan = sampler.epoch_plan(epoch);
    ASSERT_EQ(static_cast<int64_t>(plan.size()), steps);
    for (const auto& step : plan) ASSERT_EQ(static_cast<int64_t>(step.size()), w);

    // Exactly the bags of the permutation extended by wrapping to its start, once each.
    const std::vector<int64_t> perm = sampler.permutation(epoch);
    std::vector<int64_t> expected;
    for (int64_t i = 0; i < steps * w; ++i) expected.push_back(perm[static_cast<size_t>(i % shape.n)]);
    std::vector<int64_t> flat = flatten(plan);
    if (!balanced || w == 1) {
      EXPECT_EQ(flat, expected) << "plain sharding: step s, rank r trains slot s * W + r";
    }
    std::sort(flat.begin(), flat.end());
    std::sort(expected.begin(), expected.end());
    EXPECT_EQ(flat, expected);

    // Hence covering, and only steps * W - n slots repeat a bag.
    std::set<int64_t> distinct(flat.begin(), flat.end());
    EXPECT_EQ(static_cast<int64_t>(distinct.size()), shape.n);
    EXPECT_EQ(*distinct.begin(), 0);
    EXPECT_EQ(*distinct.rbegin(), shape.n - 1);

    for (int rank = 0; rank < shape.world_size; ++rank) {
      const std::vector<int64_t> seq = sampler.rank_sequence(epoch, rank);
      ASSERT_EQ(static_cast<int64_t>(seq.size()), steps) << "rank " << rank;
      for (int64_t s = 0; s < steps; ++s) EXPECT_EQ(seq[static_cast<size_t>(s)], plan[s][rank]);
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Shapes, PlanShape,
                         ::testing::Combine(::testing::Values(Shape{10, 1, 64}, Shape{10, 3, 64}, Shape{12, 4, 64},
                                                              Shape{400, 4, 64}, Shape{257, 8, 3}, Shape{101, 2, 1},
                                                              Shape{3, 5, 64}, Shape{1, 2, 64}),
                                            ::testing::Bool()));

TEST(EpochSampler, PlainShardsAreDisjointExceptPadding) {
  SamplerOptions opts;
  opts.world_size = 4;
  opts.size_balanced = false;
  EpochSampler sampler(iota_sizes(10), opts);  // 3 steps, 12 slots: 2 padded
  std::vector<std::set<int64_t>> shards;
  for (int r = 0; r < 4; ++r) {
    const auto seq = sampler.rank_sequence(3, r);
    shards.emplace_back(seq.begin(), seq.end());
  }
  const std::vector<int64_t> perm = sampler.permutation(3);
  // The two padding slots (step 2, ranks 2 and 3) repeat perm[0] and perm[1], trained by ranks 0 and 1.
  EXPECT_EQ(sampler.bag_at(3, 2, 2), perm[0]);
  EXPECT_EQ(sampler.bag_at(3, 2, 3), perm[1]);
  for (int a = 0; a < 4; ++a) {
    for (int b = a + 1; b < 4; ++b) {
      std::vector<int64_t> common;
      std::set_intersection(shards[a].begin(), shards[a].end(), shards[b].begin(), shards[b].end(),
                            std::back_inserter(common));
      if (a == 0 && b == 2) {
        EXPECT_EQ(common, std::vector<int64_t>{perm[0]});
      } else if (a == 1 && b == 3) {
        EXPECT_EQ(common, std::vector<int64_t>{perm[1]});
      } else {
        EXPECT_TRUE(common.empty()) << "ranks " << a << " and " << b;
      }
    }
  }
}

TEST(EpochSampler, DeterministicPerSeedAndEpoch) {
  for (bool balanced : {false, true}) {
    SamplerOptions opts;
    opts.world_size = 4;
    opts.size_balanced = balanced;
    opts.bucket_steps = 8;
    const auto sizes = lognormal_sizes(200, 7, 1, 1);
    const EpochSampler a(sizes, opts), b(sizes, opts);
    SamplerOptions other_seed = opts;
    other_seed.seed = 43;
    const EpochSampler c(sizes, other_seed);
    EXPECT_EQ(a.epoch_plan(5), b.epoch_plan(5)) << "balanced " << balanced;
    EXPECT_NE(a.epoch_plan(5), a.epoch_plan(6)) << "balanced " << balanced;
    EXPECT_NE(a.epoch_plan(5), c.epoch_plan(5)) << "balanced " << balanced;
  }
}

TEST(EpochSampler, BagAtResumesFromEpochAndStep) {
  SamplerOptions opts;
  opts.world_size = 3;
  opts.bucket_steps = 4;
  const auto sizes = lognormal_sizes(50, 7, 1, 2);
  const EpochSampler original(sizes, opts);
  for (int64_t epoch : {0, 4}) {
    const auto plan = original.epoch_plan(epoch);
    const EpochSampler resumed(sizes, opts);  // a fresh object, as after a restart
    for (int64_t s = 0; s < resumed.steps_per_epoch(); ++s) {
      for (int r = 0; r < 3; ++r) EXPECT_EQ(resumed.bag_at(epoch, s, r), plan[s][r]) << s << "," << r;
    }
  }
}

TEST(EpochSampler, SingleRankPlanIsThePermutation) {
  SamplerOptions balanced;
  SamplerOptions plain;
  plain.size_balanced = false;
  const auto sizes = lognormal_sizes(30, 7, 1, 3);
  const EpochSampler a(sizes, balanced), b(sizes, plain);
  EXPECT_EQ(a.epoch_plan(2), b.epoch_plan(2));
  EXPECT_EQ(a.rank_sequence(2, 0), a.permutation(2));
  EXPECT_DOUBLE_EQ(a.straggler_ratio(2), 1.0);
}

TEST(EpochSampler, SizeBalancingBoundsStragglers) {
  const auto sizes = lognormal_sizes(400, 7, 1, 2024);
  for (int w : {2, 4}) {
    SamplerOptions balanced_opts;
    balanced_opts.world_size = w;
    SamplerOptions plain_opts = balanced_opts;
    plain_opts.size_balanced = false;
    const EpochSampler balanced(sizes, balanced_opts), plain(sizes, plain_opts);
    for (int64_t epoch = 0; epoch < 5; ++epoch) {
      const double rb = balanced.straggler_ratio(epoch);
      const double rp = plain.straggler_ratio(epoch);
      std::cout << "W=" << w << " epoch " << epoch << ": straggler ratio balanced " << rb << ", plain " << rp << "\n";
      if (epoch == 0) {
        RecordProperty("balanced_W" + std::to_string(w), std::to_string(rb));
        RecordProperty("plain_W" + std::to_string(w), std::to_string(rp));
      }
      EXPECT_LE(rb, 1.10) << "W=" << w << " epoch " << epoch;
      EXPECT_GT(rp, rb + 0.1) << "W=" << w << " epoch " << epoch;
    }
  }
}

TEST(EpochSampler, SizeBalancingKeepsRandomness) {
  SamplerOptions opts;
  opts.world_size = 2;
  const auto sizes = lognormal_sizes(400, 7, 1, 5);
  const EpochSampler sampler(sizes, opts);
  const auto plan0 = sampler.epoch_plan(0);
  const auto plan1 = sampler.epoch_plan(1);

  // Which bags share a step changes between epochs...
  std::set<std::pair<int64_t, int64_t>> pairs0;
  for (const auto& step : plan0) pairs0.insert(std::minmax(step[0], step[1]));
  int repeated = 0;
  for (const auto& step : plan1) repeated += pairs0.count(std::minmax(step[0], step[1]));
  EXPECT_LT(repeated, static_cast<int>(plan1.size()) / 4);

  // ...the steps are not trained smallest first...
  std::vector<int64_t> step_max;
  for (const auto& step : plan0) step_max.push_back(std::max(sizes[step[0]], sizes[step[1]]));
  EXPECT_FALSE(std::is_sorted(step_max.begin(), step_max.begin() + 64));
  // ...and the larger bag of a step is not always on the same rank.
  int rank1_larger = 0;
  for (const auto& step : plan0) rank1_larger += sizes[step[1]] > sizes[step[0]];
  EXPECT_GT(rank1_larger, 60);
  EXPECT_LT(rank1_larger, 140);
}

TEST(EpochSampler, RejectsBadOptions) {
  SamplerOptions opts;
  expect_error([&] { EpochSampler({}, opts); }, "bag_sizes", "no bags");
  expect_error([&] { EpochSampler({3, -1}, opts); }, "bag_sizes", "bag 1 has negative size -1");
  opts.world_size = 0;
  expect_error([&] { EpochSampler({1, 2}, opts); }, "world_size", "must be >= 1, got 0");
  opts.world_size = 2;
  opts.bucket_steps = 0;
  expect_error([&] { EpochSampler({1, 2}, opts); }, "bucket_steps", "must be >= 1, got 0");
  opts.bucket_steps = 4;
  const EpochSampler sampler({1, 2, 3}, opts);  // 2 steps
  expect_error([&] { sampler.bag_at(0, 2, 0); }, "step", "must be in [0, 2), got 2");
  expect_error([&] { sampler.bag_at(0, -1, 0); }, "step", "got -1");
  expect_error([&] { sampler.bag_at(0, 0, 2); }, "rank", "must be in [0, 2), got 2");
  expect_error([&] { sampler.rank_sequence(0, -1); }, "rank", "got -1");
  expect_error([&] { sampler.epoch_plan(-1); }, "epoch", "must be >= 0, got -1");
}

// The equal-visit guarantee of gradient accumulation: R ranks taking K slots each, and one process taking
// all R * K slots, train the same bags in the same steps, because the plan depends only on the slot count.
TEST(EpochSampler, SlotSequencesSplitEachStepBetweenRanks) {
  SamplerOptions opts;
  opts.world_size = 4;  // e.g. 2 ranks x --accumulate 2, or 4 ranks, or 1 process x --accumulate 4
  opts.bucket_steps = 2;
  const EpochSampler sampler(lognormal_sizes(37, 4.5, 0.7, 5), opts);  // 10 steps, 3 padded slots
  for (int64_t epoch : {0, 3}) {
    const auto plan = sampler.epoch_plan(epoch);
    EXPECT_EQ(sampler.slot_sequence(epoch, 0, 4), flatten(plan));
    const auto first = sampler.slot_sequence(epoch, 0, 2);
    const auto second = sampler.slot_sequence(epoch, 2, 2);
    ASSERT_EQ(first.size(), plan.size() * 2);
    for (size_t s = 0; s < plan.size(); ++s) {
      EXPECT_EQ(std::vector<int64_t>({first[2 * s], first[2 * s + 1], second[2 * s], second[2 * s + 1]}), plan[s]);
    }
    for (int r = 0; r < 4; ++r) EXPECT_EQ(sampler.rank_sequence(epoch, r), sampler.slot_sequence(epoch, r, 1));
  }
  expect_error([&] { sampler.slot_sequence(0, 3, 2); }, "slots", "[3, 5) is not a range of [0, 4)");
  expect_error([&] { sampler.slot_sequence(0, -1, 1); }, "slots", "[-1, 0)");
  expect_error([&] { sampler.slot_sequence(0, 0, 0); }, "slots", "[0, 0)");
}

TEST(StragglerRatio, HandComputed) {
  // Step {0, 1}: max 3 / mean 2 = 1.5; step {2, 3}: 2 / 2 = 1; step {4, 4}: empty bags count as 1.
  const std::vector<int64_t> sizes = {1, 3, 2, 2, 0};
  EXPECT_DOUBLE_EQ(straggler_ratio({{0, 1}, {2, 3}}, sizes), 1.25);
  EXPECT_DOUBLE_EQ(straggler_ratio({{0, 1}, {2, 3}, {4, 4}}, sizes), 3.5 / 3);
  expect_error([&] { straggler_ratio({{0, 5}}, sizes); }, "plan", "names bag 5, but there are only 5 bags");
  expect_error([&] { straggler_ratio({}, sizes); }, "plan", "no steps");
}

}  // namespace
}  // namespace mil
