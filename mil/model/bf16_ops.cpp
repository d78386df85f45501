#include "mil/model/bf16_ops.hpp"

#include <ATen/Parallel.h>

#include <algorithm>

#include "mil/model/bf16_bits.hpp"

// One clone per instruction set, picked at load time (as row_ops): plain loops that GCC vectorises.
#define MIL_BF16_CLONES __attribute__((target_clones("default", "avx2", "avx512f")))

namespace mil::bf16_ops {
namespace {

using bf16_bits::to_float;

inline __attribute__((always_inline)) uint16_t to_bf16(float f) {
  return bf16_bits::round(f);
}

// Rows per task of a row-parallel pass: ~16k values, so that a task outweighs waking a thread.
int64_t rows_per_task(int64_t values_per_row) {
  return std::max<int64_t>(1, 16384 / std::max<int64_t>(values_per_row, 1));
}

constexpr int64_t kLanes = 64;        // independent partial sums of a dot product (four AVX-512 registers)
constexpr int64_t kPoolColumns = 64;  // columns of B per task of pool

MIL_BF16_CLONES void widen_rows(Rows16 src, int64_t begin, int64_t end, int64_t cols, const float* bias, float* out,
                                int64_t out_stride) {
  for (int64_t r = begin; r < end; ++r) {
    const uint16_t* s = src.row(r);
    float* o = out + r * out_stride;
    if (bias != nullptr) {
      for (int64_t j = 0; j < cols; ++j) o[j] = to_float(s[j]) + bias[j];
    } else {
      for (int64_t j = 0; j < cols; ++j) o[j] = to_float(s[j]);
    }
  }
}

MIL_BF16_CLONES void round_rows(float* src, int64_t begin, int64_t end, int64_t cols, int64_t src_stride, uint16_t* out,
                                bool relu) {
  for (int64_t r = begin; r < end; ++r) {
    float* s = src + r * src_stride;
    uint16_t* o = out + r * cols;
    if (relu) {
      for (int64_t j = 0; j < cols; ++j) {
        s[j] = s[j] < 0.0f ? 0.0f : s[j];
        o[j] = to_bf16(s[j]);
      }
    } else {
      for (int64_t j = 0; j < cols; ++j) o[j] = to_bf16(s[j]);
    }
  }
}

// out[k, j0:j1] for every class k, over all n rows in order.
MIL_BF16_CLONES void pool_columns(const float* a, int64_t c, Rows16 x, int64_t n, int64_t d, int64_t j0, int64_t j1,
                                  float* out) {
  for (int64_t k = 0; k < c; ++k) {
    float acc[kPoolColumns];
    const int64_t w = j1 - j0;
    for (int64_t j = 0; j < w; ++j) acc[j] = 0;
    const float* ak = a + k * n;
    for (int64_t r = 0; r < n; ++r) {
      const uint16_t* xr = x.row(r) + j0;
      const float s = ak[r];
      for (int64_t j = 0; j < w; ++j) acc[j] += s * to_float(xr[j]);
    }
    std::copy(acc, acc + w, out + k * d + j0);
  }
}

// kLanes partial sums, so the compiler vectorises without reassociating one sum and the additions do not
// wait on each other; combined pairwise.
MIL_BF16_CLONES float dot(const float* m, const uint16_t* x, int64_t d) {
  float acc[kLanes] = {};
  int64_t j = 0;
  for (; j + kLanes <= d; j += kLanes) {
    for (int64_t l = 0; l < kLanes; ++l) acc[l] += m[j + l] * to_float(x[j + l]);
  }
  for (; j < d; ++j) acc[0] += m[j] * to_float(x[j]);
  for (int64_t half = kLanes / 2; half > 0; half /= 2) {
    for (int64_t l = 0; l < half; ++l) acc[l] += acc[l + half];
  }
  return acc[0];
}

}  // namespace

void widen(Rows16 src, int64_t rows, int64_t cols, const float* bias, float* out, int64_t out_stride) {
  at::parallel_for(0, rows, rows_per_task(cols),
                   [&](int64_t begin, int64_t end) { widen_rows(src, begin, end, cols, bias, out, out_stride); });
}

void round(float* src, int64_t rows, int64_t cols, int64_t src_stride, uint16_t* out, bool relu) {
  at::parallel_for(0, rows, rows_per_task(cols),
                   [&](int64_t begin, int64_t end) { round_rows(src, begin, end, cols, src_stride, out, relu); });
}

void pool(const float* a, int64_t c, Rows16 x, int64_t n, int64_t d, float* out) {
  const int64_t blocks = (d + kPoolColumns - 1) / kPoolColumns;
  at::parallel_for(0, blocks, 1, [&](int64_t begin, int64_t end) {
    for (int64_t b = begin; b < end; ++b) {
      pool_columns(a, c, x, n, d, b * kPoolColumns, std::min(d, (b + 1) * kPoolColumns), out);
    }
  });
}

void row_dots(const float* m, int64_t c, Rows16 x, int64_t n, int64_t d, float* out) {
  at::parallel_for(0, n, rows_per_task(d * c), [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      for (int64_t k = 0; k < c; ++k) out[k * n + r] = dot(m + k * d, x.row(r), d);
    }
  });
}

}  // namespace mil::bf16_ops
