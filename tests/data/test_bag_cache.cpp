// The RAM cache: float16 rounding done once and checked after rounding, float32 served without copies,
// one cache shared by several loaders (folds, validation), a memory budget, and conversions equal to torch's.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>

#include "mil/data/bag_loader.hpp"
#include "mil/data/half_convert.hpp"
#include "mil/data/synthetic.hpp"
#include "mil/io/h5_reader.hpp"
#include "mil/util/error.hpp"
#include "mil/util/host_memory.hpp"
#include "tests/test_util.hpp"

namespace mil {
namespace {

class Cache : public ::testing::Test {
 protected:
  void SetUp() override {
    SyntheticOptions o;
    o.num_bags = 6;
    o.feature_dim = 16;
    o.log_mean_instances = 3.0;
    write_synthetic_channel(dir_.path(), o);
    index_ = index_channel(dir_.path(), nullptr, nullptr, {});
  }

  std::vector<torch::Tensor> pass(BagLoader& loader, const std::vector<int64_t>& order) {
    std::vector<torch::Tensor> out;
    loader.start(order);
    for (size_t i = 0; i < order.size(); ++i) out.push_back(loader.next().features);
    return out;
  }

  torch::Tensor disk(int64_t i) const { return read_bag(index_.bags[i], i, "features", false).features; }

  test::TempDir dir_;
  BagIndex index_;
};

TEST_F(Cache, SlideBeyondFloat16RangeStaysFloat32) {
  // 1e5 is finite in float32 but Inf in float16 (max 65504): that slide must not train on Inf.
  torch::Tensor big = disk(3).clone();
  big[2][5] = 1e5f;
  big[0][0] = -70000.0f;
  io::H5Writer(index_.bags[3].path).write("features", big);
  LoaderOptions opts;
  opts.cache = CacheMode::kFloat16;
  BagLoader loader(index_, opts);
  const std::vector<int64_t> all = {0, 1, 2, 3, 4, 5};
  for (int epoch = 0; epoch < 2; ++epoch) {  // the first from disk, the second from RAM
    const std::vector<torch::Tensor> got = pass(loader, all);
    EXPECT_TRUE(torch::equal(got[3], big)) << "epoch " << epoch;
    EXPECT_TRUE(torch::isfinite(got[3]).all().item<bool>());
    for (int64_t i : {0, 1, 2, 4, 5}) EXPECT_TRUE(torch::equal(got[i], disk(i).to(torch::kHalf).to(torch::kFloat)));
  }
  int64_t expected_bytes = 0;
  for (int64_t i = 0; i < 6; ++i) expected_bytes += index_.bags[i].num_instances * 16 * (i == 3 ? 4 : 2);
  EXPECT_EQ(loader.cache_bytes(), expected_bytes);
}

TEST_F(Cache, ValuesJustInsideFloat16RangeAreRounded) {
  torch::Tensor edge = disk(1).clone();
  edge[0][0] = 65504.0f;  // float16's largest finite value
  edge[0][1] = 65519.0f;  // rounds down to 65504
  io::H5Writer(index_.bags[1].path).write("features", edge);
  auto cache = std::make_shared<BagCache>(CacheMode::kFloat16);
  BagLoader loader(index_, {}, cache);
  const torch::Tensor got = pass(loader, {1})[0];
  EXPECT_EQ(got[0][1].item<float>(), 65504.0f);
  EXPECT_EQ(cache->bags_in_float32(), 0);
  EXPECT_EQ(cache->bytes(), index_.bags[1].num_instances * 16 * 2);
}

TEST_F(Cache, Float32CacheServesItsOwnTensorWithoutCopies) {
  auto cache = std::make_shared<BagCache>(CacheMode::kFloat32);
  BagLoader loader(index_, {}, cache);
  const std::vector<torch::Tensor> first = pass(loader, {0, 4});
  const std::vector<torch::Tensor> second = pass(loader, {0, 4});
  for (size_t i = 0; i < 2; ++i) {
    EXPECT_EQ(first[i].data_ptr(), second[i].data_ptr());
    EXPECT_TRUE(torch::equal(second[i], disk(i == 0 ? 0 : 4)));
  }
}

TEST_F(Cache, SharedAcrossLoadersOfDifferentSets) {
  // Two "folds" over overlapping subsets and a validation loader: one read per file in all.
  BagIndex fold_a = index_, fold_b = index_;
  fold_a.bags = {index_.bags[0], index_.bags[1], index_.bags[2]};
  fold_b.bags = {index_.bags[2], index_.bags[3]};
  auto cache = std::make_shared<BagCache>(CacheMode::kFloat16);
  {
    BagLoader a(fold_a, {}, cache);
    pass(a, {0, 1, 2});
  }
  EXPECT_EQ(cache->bags(), 3);
  std::filesystem::remove(index_.bags[2].path);  // fold b's first bag must now come from RAM
  BagLoader b(fold_b, {}, cache);
  const std::vector<torch::Tensor> got = pass(b, {0, 1});
  EXPECT_EQ(cache->bags(), 4);
  EXPECT_EQ(got[0].size(0), index_.bags[2].num_instances);
  EXPECT_EQ(b.cached_bags(), 4);  // a shared cache counts every loader's bags
  // A loader asking for coordinates never uses the cache (it reads the file, which is gone).
  LoaderOptions with_coords;
  with_coords.with_coords = true;
  BagLoader c(fold_b, with_coords, cache);
  c.start({0});
  EXPECT_THROW(c.next(), Error);
}

TEST_F(Cache, BudgetLeavesLaterBagsOnDiskWithTheSameValues) {
  const int64_t two_bags = (index_.bags[0].num_instances + index_.bags[1].num_instances) * 16 * 2;
  auto cache = std::make_shared<BagCache>(CacheMode::kFloat16, two_bags);
  BagLoader loader(index_, {}, cache);
  const std::vector<int64_t> all = {0, 1, 2, 3, 4, 5};
  const std::vector<torch::Tensor> first = pass(loader, all);
  EXPECT_EQ(cache->bags(), 2);
  EXPECT_EQ(cache->bytes(), two_bags);
  EXPECT_EQ(cache->bags_over_budget(), 4);
  const std::vector<torch::Tensor> second = pass(loader, all);
  for (size_t i = 0; i < all.size(); ++i) {
    EXPECT_TRUE(torch::equal(first[i], second[i]));  // rounded to float16 whether kept or not
    EXPECT_TRUE(torch::equal(second[i], disk(static_cast<int64_t>(i)).to(torch::kHalf).to(torch::kFloat)));
  }
  EXPECT_THROW(BagCache(CacheMode::kFloat16, -1), Error);
  EXPECT_EQ(make_bag_cache(CacheMode::kNone, 3), nullptr);
  EXPECT_EQ(make_bag_cache(CacheMode::kFloat32, 1.5)->budget_bytes(), 1500000000);
}

// --cache auto: float32, half the free memory shared by the ranks on the host, or the explicit budget.
TEST(BagCache, AutoIsABoundedFloat32Cache) {
  const auto cache = make_auto_bag_cache(CacheMode::kFloat32, 0, int64_t{16} << 30, 4);
  ASSERT_NE(cache, nullptr);
  EXPECT_EQ(cache->mode(), CacheMode::kFloat32);
  EXPECT_EQ(cache->budget_bytes(), (int64_t{16} << 30) / 2 / 4);
  EXPECT_EQ(make_auto_bag_cache(CacheMode::kFloat32, 1.5, int64_t{16} << 30, 4)->budget_bytes(), 1500000000);
  EXPECT_EQ(make_auto_bag_cache(CacheMode::kFloat32, 0, 0, 1), nullptr);  // memory unknown: no cache
  EXPECT_EQ(parse_cache_mode("auto"), CacheMode::kFloat32);
  // This machine's free memory is known and plausible (more than 64 MB, less than 64 TB).
  EXPECT_GT(available_memory_bytes(), int64_t{64} << 20);
  EXPECT_LT(available_memory_bytes(), int64_t{64} << 40);
}

// --cache gpu: float16 on the training GPU, bounded by a budget it requires; refused when the job trains on a CPU.
TEST(BagCache, GpuCacheNeedsAGpuAndABudget) {
  EXPECT_EQ(parse_cache_mode("gpu"), CacheMode::kFloat16);
  EXPECT_TRUE(cache_on_device("gpu"));
  EXPECT_FALSE(cache_on_device("ram"));
  const std::string on_cpu = test::error_message([] { make_device_bag_cache(CacheMode::kFloat16, 4, torch::kCPU); });
  EXPECT_NE(on_cpu.find("--cache gpu keeps the features on the training GPU, and this job trains on cpu"),
            std::string::npos)
      << on_cpu;
  const torch::Device gpu(torch::kCUDA, 1);
  const std::string no_budget = test::error_message([&] { make_device_bag_cache(CacheMode::kFloat16, 0, gpu); });
  EXPECT_NE(no_budget.find("needs --cache-budget"), std::string::npos) << no_budget;
  const auto cache = make_device_bag_cache(CacheMode::kFloat16, 2.5, gpu);  // nothing is allocated until a bag comes
  EXPECT_EQ(cache->device(), gpu);
  EXPECT_EQ(cache->budget_bytes(), 2500000000);
  EXPECT_EQ(BagCache(CacheMode::kFloat16).device(), torch::Device(torch::kCPU));
}

uint16_t bits_of(at::Half h) {
  uint16_t b;
  std::memcpy(&b, &h, 2);
  return b;
}

TEST(HalfConvert, EqualsTorchBitForBit) {
  // Every float16 bit pattern to float32.
  torch::Tensor all_halves = torch::arange(0, 65536, torch::kInt).to(torch::kShort).view(torch::kHalf);
  torch::Tensor mine = torch::empty({65536}, torch::kFloat);
  half_to_float(reinterpret_cast<const uint16_t*>(all_halves.data_ptr<at::Half>()), mine.data_ptr<float>(), 65536);
  const torch::Tensor theirs = all_halves.to(torch::kFloat);
  const torch::Tensor nan = torch::isnan(theirs);
  EXPECT_TRUE(torch::equal(nan, torch::isnan(mine)));
  EXPECT_TRUE(torch::equal(mine.masked_fill(nan, 0).view(torch::kInt), theirs.masked_fill(nan, 0).view(torch::kInt)));

  // Float32 to float16 over many magnitudes (subnormal, normal, overflow) and ties; odd length for the tail.
  torch::manual_seed(3);
  torch::Tensor x = torch::randn({100001}) * torch::pow(2.0, torch::randint(-30, 18, {100001}).to(torch::kFloat));
  x.slice(0, 0, 6).copy_(torch::tensor({65504.0f, 65519.0f, 65520.0f, -1e5f, 6e-8f, 2049.0f}));
  torch::Tensor halves = torch::empty({x.numel()}, torch::kHalf);
  const int64_t overflow =
      float_to_half(x.data_ptr<float>(), reinterpret_cast<uint16_t*>(halves.data_ptr<at::Half>()), x.numel());
  const torch::Tensor expected = x.to(torch::kHalf);
  EXPECT_TRUE(torch::equal(halves.view(torch::kShort), expected.view(torch::kShort)));
  EXPECT_EQ(overflow, torch::isinf(expected).sum().item<int64_t>());
  EXPECT_GE(overflow, 2);
  EXPECT_EQ(bits_of(halves[1].item<at::Half>()), 0x7bff);  // 65519 rounds to 65504, not Inf
}

}  // namespace
}  // namespace mil
