#include "mil/model/row_ops.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "mil/model/bf16_bits.hpp"
#include "mil/model/row_blocks.hpp"

// One clone per instruction set, picked at load time: the loops below are written so that GCC vectorises
// them (selects instead of branches, no calls), and AVX-512 does 16 rows' worth of a tanh at once.
#define MIL_ROW_OPS_CLONES __attribute__((target_clones("default", "avx2", "avx512f")))

namespace mil::row_ops {
namespace {

// e^y for y in [0, 20], as 2^k e^r with |r| <= ln2 / 2 (ln2 split in two for an exact k ln2); e^r by a
// degree-6 polynomial fitted here for relative error (1.9e-9 on that interval, below float's rounding).
inline __attribute__((always_inline)) float exp_0_20(float y) {
  const float k = std::floor(y * 1.44269504f + 0.5f);
  const float r = (y - k * 0.693145752f) - k * 1.42860677e-6f;
  float p = 1.383721217e-03f;
  p = p * r + 8.374818823e-03f;
  p = p * r + 4.166821909e-02f;
  p = p * r + 1.666642012e-01f;
  p = p * r + 4.999999211e-01f;
  p = p * r + 1.000000036e+00f;
  p = p * r + 1.000000001e+00f;
  const int32_t bits = (static_cast<int32_t>(k) + 127) << 23;  // 2^k, k in [0, 29]
  float scale;
  std::memcpy(&scale, &bits, sizeof scale);
  return p * scale;
}

// tanh(x) = x P(x²) below |x| = 0.625 (P of degree 5 fitted for relative error, 4e-9), else
// sign(x) (1 - 2 / (e^2|x| + 1)); |x| is capped at 10, where tanh is 1 in float (so ±inf gives ±1).
inline __attribute__((always_inline)) float tanh_one(float x) {
  const float u = std::fabs(x);
  const float t = x * x;
  float p = -5.660004697e-03f;
  p = p * t + 2.059100374e-02f;
  p = p * t - 5.372107333e-02f;
  p = p * t + 1.333112761e-01f;
  p = p * t - 3.333326053e-01f;
  p = p * t + 9.999999961e-01f;
  const float small = x * p;
  const float capped = u < 10.0f ? u : 10.0f;  // NaN: 10, replaced below
  const float large = 1.0f - 2.0f / (exp_0_20(2.0f * capped) + 1.0f);
  const float big = std::copysign(large, x);
  return u < 0.625f ? small : (u >= 0.625f ? big : x);  // NaN: both comparisons false
}

}  // namespace

float tanh(float x) {
  return tanh_one(x);
}

namespace {

inline __attribute__((always_inline)) void round_row(const float* src, int64_t h, uint16_t* out) {
  for (int64_t j = 0; j < h; ++j) out[j] = bf16_bits::round(src[j]);
}

MIL_ROW_OPS_CLONES void tanh_rows(Block y, int64_t begin, int64_t end) {
  for (int64_t r = begin; r < end; ++r) {
    float* row = y.row(r);
    for (int64_t j = 0; j < y.h; ++j) row[j] = tanh_one(row[j]);
  }
}

MIL_ROW_OPS_CLONES void relu_rows(Block y, int64_t begin, int64_t end) {
  for (int64_t r = begin; r < end; ++r) {
    float* row = y.row(r);
    for (int64_t j = 0; j < y.h; ++j) row[j] = row[j] < 0.0f ? 0.0f : row[j];
  }
}

// The backward passes of one block, its column sums written to sum[0, h); the rounding, where asked, in a
// loop of its own over the row just written (still in L1), so that both loops vectorise.
MIL_ROW_OPS_CLONES void tanh_grad_rows(Block q, Block d, int64_t begin, int64_t end, float* sum, Rounded rounded) {
  std::fill(sum, sum + d.h, 0.0f);
  for (int64_t r = begin; r < end; ++r) {
    const float* qr = q.row(r);
    float* dr = d.row(r);
    for (int64_t j = 0; j < d.h; ++j) {
      dr[j] *= 1.0f - qr[j] * qr[j];
      sum[j] += dr[j];
    }
    if (rounded.p != nullptr) round_row(dr, d.h, rounded.p + r * rounded.stride);
  }
}

MIL_ROW_OPS_CLONES void relu_grad_rows(Block z, Block d, int64_t begin, int64_t end, float* sum, Rounded rounded) {
  std::fill(sum, sum + d.h, 0.0f);
  for (int64_t r = begin; r < end; ++r) {
    const float* zr = z.row(r);
    float* dr = d.row(r);
    for (int64_t j = 0; j < d.h; ++j) {
      dr[j] = zr[j] > 0.0f ? dr[j] : 0.0f;
      sum[j] += dr[j];
    }
    if (rounded.p != nullptr) round_row(dr, d.h, rounded.p + r * rounded.stride);
  }
}

}  // namespace

void tanh_inplace(Block y) {
  for_row_blocks(y.rows, [&](int64_t begin, int64_t end, int64_t) { tanh_rows(y, begin, end); });
}

void relu_inplace(Block y) {
  for_row_blocks(y.rows, [&](int64_t begin, int64_t end, int64_t) { relu_rows(y, begin, end); });
}

void tanh_grad(Block q, Block d, float* col_sum, Rounded rounded) {
  sum_over_row_blocks(d.rows, d.h, col_sum,
                      [&](int64_t begin, int64_t end, float* sum) { tanh_grad_rows(q, d, begin, end, sum, rounded); });
}

void relu_grad(Block z, Block d, float* col_sum, Rounded rounded) {
  sum_over_row_blocks(d.rows, d.h, col_sum,
                      [&](int64_t begin, int64_t end, float* sum) { relu_grad_rows(z, d, begin, end, sum, rounded); });
}

}  // namespace mil::row_ops
