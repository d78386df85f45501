#pragma once
// Loops of the bf16 step (DsmilStep with Precision::kBFloat16) over bfloat16 matrices on the CPU, where a
// libtorch op would cost a pass more or a product in the wrong shape:
//  - widen: a bfloat16 product's result into the step's float32 workspace with its bias added, one pass
//    (libtorch: a copy, then an add);
//  - pool and row_dots: the attention pooling B = A X over a bfloat16 bag and its gradient dA = dB Xᵀ,
//    with A and dB (one row per class) kept in float32. As products these are GEMMs of one to a few rows,
//    which oneDNN runs at a fraction of the memory speed they need.
// Each output element is computed by one thread in a fixed order, so results do not depend on the
// thread count. bfloat16 values are passed as their bits (uint16_t), as libtorch stores them.
#include <cstdint>

namespace mil::bf16_ops {

// A row-major bfloat16 matrix given by its first element and the distance between rows.
struct Rows16 {
  const uint16_t* p;
  int64_t stride;
  const uint16_t* row(int64_t r) const { return p + r * stride; }
};

// out[r, :] = src[r, :] + bias (bias may be null), src [rows, cols] bfloat16, out float32 rows `out_stride`
// apart.
void widen(Rows16 src, int64_t rows, int64_t cols, const float* bias, float* out, int64_t out_stride);

// out[r, :] = src[r, :] rounded to bfloat16 (to nearest, ties to even, as libtorch rounds; NaN stays NaN),
// src [rows, cols] float32 rows `src_stride` apart, out [rows, cols] contiguous. With relu, src's rows are
// first replaced by max(src, 0) (NaN stays NaN), in place: one pass for the step's z1 = relu(...) and its
// rounding.
void round(float* src, int64_t rows, int64_t cols, int64_t src_stride, uint16_t* out, bool relu = false);

// out[k, :] = Σ_r a[k, r] x[r, :] for k < c: a [c, n] float32, x [n, d], out [c, d] float32.
void pool(const float* a, int64_t c, Rows16 x, int64_t n, int64_t d, float* out);

// out[k, r] = m[k, :] · x[r, :] for k < c: m [c, d] float32, x [n, d], out [c, n] float32.
void row_dots(const float* m, int64_t c, Rows16 x, int64_t n, int64_t d, float* out);

}  // namespace mil::bf16_ops
