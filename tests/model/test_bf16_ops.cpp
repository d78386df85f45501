// The loops of the bf16 step (mil/model/bf16_ops) against libtorch computing the same in float64: the widened
// product with its bias exactly, the attention pooling and its gradient to float rounding; and the same
// bits on one thread as on two.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>

#include "mil/model/bf16_ops.hpp"
#include "tests/test_util.hpp"

namespace mil {
namespace {

bf16_ops::Rows16 rows16(const torch::Tensor& m) {
  return {reinterpret_cast<const uint16_t*>(m.data_ptr<at::BFloat16>()), m.stride(0)};
}

TEST(Bf16Ops, WidenAddsTheBiasExactlyIntoStridedRows) {
  torch::manual_seed(1);
  const torch::Tensor src = torch::randn({700, 129}).to(torch::kBFloat16);  // several tasks' worth of rows
  const torch::Tensor bias = torch::randn({129});
  torch::Tensor out = torch::full({700, 131}, -7.0f);
  bf16_ops::widen(rows16(src), 700, 129, bias.data_ptr<float>(), out.data_ptr<float>(), 131);
  EXPECT_TRUE(torch::equal(out.narrow(1, 0, 129), src.to(torch::kFloat) + bias));
  EXPECT_TRUE(torch::equal(out.narrow(1, 129, 2), torch::full({700, 2}, -7.0f)));  // beyond cols: untouched
  bf16_ops::widen(rows16(src), 700, 129, nullptr, out.data_ptr<float>(), 131);
  EXPECT_TRUE(torch::equal(out.narrow(1, 0, 129), src.to(torch::kFloat)));
}

TEST(Bf16Ops, RoundingIsLibtorchsBitForBitAndReluFirstKeepsNan) {
  torch::manual_seed(4);
  // Random values over many magnitudes, exact ties (low half 0x8000, both parities), infinities and a NaN.
  torch::Tensor src = (torch::randn({600, 130}) * torch::exp(torch::randn({600, 130}) * 8)).contiguous();
  const std::vector<uint32_t> specials = {0x3f808000u, 0x3f818000u, 0xbf808000u, 0x7f7fffffu, 0x7f800000u, 0xff800000u};
  for (size_t i = 0; i < specials.size(); ++i) {
    float f;
    std::memcpy(&f, &specials[i], sizeof f);
    src[0][static_cast<int64_t>(i) + 1] = f;  // inside the rows below
  }
  src[1][1] = std::nanf("");
  torch::Tensor rows = src.narrow(1, 1, 128);  // strided rows, as z1 is
  torch::Tensor out = torch::empty({600, 128}, torch::kBFloat16);
  auto* o = reinterpret_cast<uint16_t*>(out.data_ptr<at::BFloat16>());
  bf16_ops::round(rows.data_ptr<float>(), 600, 128, rows.stride(0), o, false);
  const torch::Tensor expected = rows.to(torch::kBFloat16);
  EXPECT_TRUE(torch::equal(out.narrow(0, 2, 598), expected.narrow(0, 2, 598)));  // row 1 holds the NaN
  EXPECT_TRUE(torch::equal(out[1].narrow(0, 1, 127), expected[1].narrow(0, 1, 127)));
  EXPECT_TRUE(std::isnan(out[1][0].item<float>()));
  EXPECT_TRUE(torch::equal(out[0], expected[0]));  // the ties, overflow to inf and the infinities
  const torch::Tensor before = src.clone();
  bf16_ops::round(rows.data_ptr<float>(), 600, 128, rows.stride(0), o, true);
  const torch::Tensor relu = before.narrow(1, 1, 128).relu();
  EXPECT_TRUE(torch::allclose(rows, relu, 0, 0, /*equal_nan=*/true));
  EXPECT_TRUE(torch::equal(src.narrow(1, 0, 1), before.narrow(1, 0, 1)));  // outside the rows: untouched
  EXPECT_TRUE(torch::allclose(out.to(torch::kFloat), relu.to(torch::kBFloat16).to(torch::kFloat), 0, 0, true));
  EXPECT_TRUE(std::isnan(out[1][0].item<float>()) == std::isnan(before[1][1].item<float>()));
}

TEST(Bf16Ops, PoolAndItsGradientMatchFloat64Products) {
  torch::manual_seed(2);
  for (const auto& [c, n, d] : {std::tuple<int64_t, int64_t, int64_t>{1, 1000, 512}, {3, 37, 200}, {2, 1, 70}}) {
    const torch::Tensor x = torch::randn({n, d}).to(torch::kBFloat16);
    const torch::Tensor a = torch::softmax(torch::randn({c, n}), 1);
    const torch::Tensor g = torch::randn({c, d});
    torch::Tensor pooled = torch::empty({c, d});
    torch::Tensor dots = torch::empty({c, n});
    bf16_ops::pool(a.data_ptr<float>(), c, rows16(x), n, d, pooled.data_ptr<float>());
    bf16_ops::row_dots(g.data_ptr<float>(), c, rows16(x), n, d, dots.data_ptr<float>());
    const torch::Tensor xd = x.to(torch::kDouble);
    EXPECT_TRUE(test::all_close(pooled.to(torch::kDouble), a.to(torch::kDouble).mm(xd), 1e-5, 1e-6))
        << c << " x " << n << " x " << d;
    EXPECT_TRUE(test::all_close(dots.to(torch::kDouble), g.to(torch::kDouble).mm(xd.t()), 1e-5, 1e-5))
        << c << " x " << n << " x " << d;
  }
}

TEST(Bf16Ops, OneThreadAndTwoGiveTheSameBits) {
  torch::manual_seed(3);
  const int64_t n = 3000, d = 512;
  const torch::Tensor x = torch::randn({n, d}).to(torch::kBFloat16);
  const torch::Tensor a = torch::softmax(torch::randn({2, n}), 1);
  const torch::Tensor g = torch::randn({2, d});
  std::vector<torch::Tensor> pooled, dots;
  for (int threads : {1, 2}) {
    test::on_threads(threads, [&] {
      pooled.push_back(torch::empty({2, d}));
      dots.push_back(torch::empty({2, n}));
      bf16_ops::pool(a.data_ptr<float>(), 2, rows16(x), n, d, pooled.back().data_ptr<float>());
      bf16_ops::row_dots(g.data_ptr<float>(), 2, rows16(x), n, d, dots.back().data_ptr<float>());
    });
  }
  EXPECT_TRUE(torch::equal(pooled[0], pooled[1]));
  EXPECT_TRUE(torch::equal(dots[0], dots[1]));
}

}  // namespace
}  // namespace mil
