// Features for --precision bf16: rounded to bfloat16 once, as torch rounds them, on the loader's thread; a
// bfloat16 RAM cache serves its own tensors (no conversion per epoch); values beyond bfloat16's range are
// refused naming the file.
#include <gtest/gtest.h>

#include <cstring>
#include <limits>

#include "mil/data/bag_loader.hpp"
#include "mil/data/half_convert.hpp"
#include "mil/data/synthetic.hpp"
#include "mil/io/h5_reader.hpp"
#include "tests/test_util.hpp"

namespace mil {
namespace {

TEST(Bfloat16Features, RoundedAsTorchRoundsThem) {
  torch::manual_seed(3);
  torch::Tensor x = torch::cat({torch::randn({5000}) * 100, torch::rand({5000}) * 1e-30,
                                torch::tensor({0.0f, -0.0f, 1.0f + 1.0f / 256, 1.0f + 3.0f / 256, 65504.0f,
                                               std::numeric_limits<float>::denorm_min(), 3.3e38f, -3.3e38f})});
  torch::Tensor out = torch::empty(x.sizes(), torch::kBFloat16);
  EXPECT_EQ(
      float_to_bfloat16(x.data_ptr<float>(), reinterpret_cast<uint16_t*>(out.data_ptr<at::BFloat16>()), x.numel()), 0);
  const torch::Tensor expected = x.to(torch::kBFloat16);
  EXPECT_EQ(std::memcmp(out.data_ptr(), expected.data_ptr(), 2 * x.numel()), 0);
  // Beyond the midpoint between bfloat16's largest finite value (~3.3895e38) and 2^128: rounds to +-Inf.
  const float beyond[] = {std::numeric_limits<float>::max(), -3.3970e38f};
  uint16_t bits[2];
  EXPECT_EQ(float_to_bfloat16(beyond, bits, 2), 2);
}

class Bfloat16Loader : public ::testing::Test {
 protected:
  void SetUp() override {
    SyntheticOptions o;
    o.num_bags = 5;
    o.feature_dim = 16;
    o.log_mean_instances = 3.0;
    write_synthetic_channel(dir_.path(), o);
    index_ = index_channel(dir_.path(), nullptr, nullptr, {});
  }
  std::vector<torch::Tensor> pass(BagLoader& loader) {
    loader.start({0, 1, 2, 3, 4});
    std::vector<torch::Tensor> out;
    while (loader.has_next()) out.push_back(loader.next().features);
    return out;
  }
  torch::Tensor disk(int64_t i) const { return read_bag(index_.bags[i], i, "features", false).features; }

  test::TempDir dir_;
  BagIndex index_;
};

TEST_F(Bfloat16Loader, EveryCacheServesTheSameBfloat16Values) {
  for (const char* cache : {"none", "ram", "ram32"}) {
    SCOPED_TRACE(cache);
    LoaderOptions opts;
    opts.bfloat16 = true;
    BagLoader loader(index_, opts, make_bag_cache(cache_mode_for(cache, true), 0));
    for (int epoch = 0; epoch < 2; ++epoch) {  // from disk, then (with a cache) from RAM
      const std::vector<torch::Tensor> got = pass(loader);
      for (int64_t i = 0; i < 5; ++i) {
        ASSERT_EQ(got[i].scalar_type(), torch::kBFloat16);
        EXPECT_TRUE(torch::equal(got[i], disk(i).to(torch::kBFloat16))) << "bag " << i << " epoch " << epoch;
      }
      if (epoch == 1 && std::string(cache) != "none") {
        // The cache's own tensors, served without a copy: the same storage every epoch.
        const std::vector<torch::Tensor> again = pass(loader);
        for (int64_t i = 0; i < 5; ++i) EXPECT_EQ(again[i].data_ptr(), got[i].data_ptr());
        EXPECT_EQ(loader.cache_bytes(), [&] {
          int64_t b = 0;
          for (const BagInfo& info : index_.bags) b += info.num_instances * 16 * 2;
          return b;
        }());
      }
    }
  }
}

TEST_F(Bfloat16Loader, ValuesBeyondBfloat16RangeNameTheFile) {
  torch::Tensor big = disk(2).clone();
  big[1][3] = std::numeric_limits<float>::max();
  io::H5Writer(index_.bags[2].path).write("features", big);
  LoaderOptions opts;
  opts.bfloat16 = true;
  BagLoader loader(index_, opts);
  loader.start({2});
  EXPECT_TRUE(test::throws_error_naming([&] { loader.next(); }, {index_.bags[2].path, "bfloat16's range"}));
}

}  // namespace
}  // namespace mil
