// The fused elementwise passes of the hand-written steps (mil/model/row_ops) against libtorch's ops and
// std::tanh: values, NaN and infinities, strided rows, and the column sums they add.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>

#include "mil/model/row_ops.hpp"
#include "mil/model/step_math.hpp"
#include "tests/test_util.hpp"

namespace mil {
namespace {

using step_math::block;

TEST(RowOps, TanhIsWithinTwoPointFiveE7OfStdTanhOverEveryFloatStride) {
  // Every 101st bit pattern of the positive floats below infinity, and their negatives.
  double worst = 0;
  float worst_x = 0;
  for (uint32_t bits = 1; bits < 0x7f800000u; bits += 101) {
    for (uint32_t sign : {0u, 0x80000000u}) {
      const uint32_t b = bits | sign;
      float x;
      std::memcpy(&x, &b, sizeof x);
      const double expected = std::tanh(static_cast<double>(x));
      const double err = std::abs(row_ops::tanh(x) - expected) / std::abs(expected);
      if (err > worst) {
        worst = err;
        worst_x = x;
      }
    }
  }
  EXPECT_LE(worst, 2.5e-7) << "at x = " << worst_x;
}

TEST(RowOps, TanhKeepsNanAndSaturatesInfinities) {
  const float inf = std::numeric_limits<float>::infinity();
  // 40 values: more than one vector of every width, so both the vector loop and its tail run.
  torch::Tensor t = torch::full({2, 20}, std::nanf(""));
  t[0][3] = inf;
  t[1][19] = -inf;
  t[0][5] = -0.0f;
  row_ops::tanh_inplace(block(t));
  EXPECT_EQ(t[0][3].item<float>(), 1.0f);
  EXPECT_EQ(t[1][19].item<float>(), -1.0f);
  EXPECT_TRUE(std::signbit(t[0][5].item<float>()));
  EXPECT_EQ(t.isnan().sum().item<int64_t>(), 37);
}

TEST(RowOps, TanhAndReluTouchOnlyTheirColumnsOfStridedRows) {
  torch::manual_seed(3);
  const torch::Tensor z = torch::randn({37, 129}) * 4;
  torch::Tensor ours = z.clone();
  row_ops::tanh_inplace(block(ours.narrow(1, 1, 128)));
  EXPECT_TRUE(torch::equal(ours.narrow(1, 0, 1), z.narrow(1, 0, 1)));
  EXPECT_TRUE(test::all_close(ours.narrow(1, 1, 128), z.narrow(1, 1, 128).tanh(), 3e-7, 1e-7));

  torch::Tensor r = z.clone();
  r[5][7] = std::nanf("");
  const torch::Tensor expected = r.narrow(1, 1, 128).relu();
  row_ops::relu_inplace(block(r.narrow(1, 1, 128)));
  EXPECT_TRUE(torch::equal(r.narrow(1, 0, 1), z.narrow(1, 0, 1)));
  EXPECT_TRUE(torch::allclose(r.narrow(1, 1, 128), expected, 0, 0, /*equal_nan=*/true));
  EXPECT_TRUE(std::isnan(r[5][7].item<float>()));  // a diverged step stays visible to the divergence guard
}

TEST(RowOps, GradientsAndTheirColumnSumsMatchLibtorch) {
  torch::manual_seed(4);
  const torch::Tensor q = torch::randn({50, 128}).tanh();
  const torch::Tensor z = torch::randn({50, 129}).relu().narrow(1, 1, 128);  // strided, as z1 is
  const torch::Tensor d = torch::randn({50, 128});
  const torch::Tensor start = torch::randn({128});  // overwritten, not added to

  torch::Tensor d_tanh = d.clone();
  torch::Tensor sum_tanh = start.clone();
  row_ops::tanh_grad(block(q), block(d_tanh), sum_tanh.data_ptr<float>());
  const torch::Tensor expected_tanh = at::tanh_backward(d, q);
  EXPECT_TRUE(test::all_close(d_tanh, expected_tanh, 1e-6, 1e-7));
  EXPECT_TRUE(test::all_close(sum_tanh, expected_tanh.sum(0), 1e-5, 1e-5));

  torch::Tensor d_relu = d.clone();
  torch::Tensor sum_relu = start.clone();
  row_ops::relu_grad(block(z), block(d_relu), sum_relu.data_ptr<float>());
  const torch::Tensor expected_relu = at::threshold_backward(d, z, 0);
  EXPECT_TRUE(torch::equal(d_relu, expected_relu));
  EXPECT_TRUE(test::all_close(sum_relu, expected_relu.sum(0), 1e-5, 1e-5));
}

// The bf16 step's fused rounding: the pass's result as libtorch rounds it, into strided rows (as d_z1 sits
// in d_z), over several row blocks; the float32 result and column sums as without it; nothing else written.
TEST(RowOps, GradientsRoundedInTheSamePassAreLibtorchsBitsInStridedRows) {
  torch::manual_seed(6);
  const torch::Tensor q = torch::randn({700, 128}).tanh();
  const torch::Tensor z = torch::randn({700, 128}).relu();
  const torch::Tensor d = torch::randn({700, 128}) * torch::exp(torch::randn({700, 128}) * 4);
  for (const bool tanh : {true, false}) {
    torch::Tensor plain = d.clone(), fused = d.clone();
    torch::Tensor sum_plain = torch::empty({128}), sum_fused = torch::empty({128});
    torch::Tensor out = torch::full({700, 131}, -5.0f).to(torch::kBFloat16);  // 3 columns beside the rows
    const row_ops::Rounded rounded{reinterpret_cast<uint16_t*>(out.data_ptr<at::BFloat16>()) + 2, 131};
    if (tanh) {
      row_ops::tanh_grad(block(q), block(plain), sum_plain.data_ptr<float>());
      row_ops::tanh_grad(block(q), block(fused), sum_fused.data_ptr<float>(), rounded);
    } else {
      row_ops::relu_grad(block(z), block(plain), sum_plain.data_ptr<float>());
      row_ops::relu_grad(block(z), block(fused), sum_fused.data_ptr<float>(), rounded);
    }
    EXPECT_TRUE(torch::equal(fused, plain));
    EXPECT_TRUE(torch::equal(sum_fused, sum_plain));
    EXPECT_TRUE(torch::equal(out.narrow(1, 2, 128), plain.to(torch::kBFloat16))) << (tanh ? "tanh" : "relu");
    EXPECT_TRUE(torch::equal(out.narrow(1, 0, 2), torch::full({700, 2}, -5.0f).to(torch::kBFloat16)));
    EXPECT_TRUE(torch::equal(out.narrow(1, 130, 1), torch::full({700, 1}, -5.0f).to(torch::kBFloat16)));
  }
}

TEST(RowOps, ColumnSumsOverManyBlocksAreTheSameOnOneThreadAndTwo) {
  torch::manual_seed(5);
  const torch::Tensor q = torch::randn({1500, 128}).tanh();  // six row blocks, the last one partial
  const torch::Tensor d = torch::randn({1500, 128});
  std::vector<torch::Tensor> grads, sums;
  for (int threads : {1, 2}) {
    test::on_threads(threads, [&] {
      grads.push_back(d.clone());
      sums.push_back(torch::empty({128}));
      row_ops::tanh_grad(block(q), block(grads.back()), sums.back().data_ptr<float>());
    });
  }
  const torch::Tensor expected = at::tanh_backward(d, q);
  EXPECT_TRUE(test::all_close(grads[0], expected, 1e-6, 1e-7));
  EXPECT_TRUE(test::all_close(sums[0], expected.sum(0), 1e-5, 1e-5));
  EXPECT_TRUE(torch::equal(grads[0], grads[1]));
  EXPECT_TRUE(torch::equal(sums[0], sums[1]));
}

}  // namespace
}  // namespace mil
