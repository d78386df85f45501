#pragma once
// Rows of a bag split into fixed blocks of kRowBlock that run in parallel on libtorch's threads. A block is
// the unit of work and of summation: a sum over rows is taken per block, then over the blocks in order, so
// it is the same for any thread count (a bag of up to kRowBlock rows is one block, summed as one loop).
#include <ATen/Parallel.h>

#include <algorithm>
#include <cstdint>
#include <vector>

namespace mil {

constexpr int64_t kRowBlock = 256;

inline int64_t row_blocks(int64_t rows) {
  return (rows + kRowBlock - 1) / kRowBlock;
}

// f(begin, end, block) for each block of [0, rows); one block runs on the caller's thread.
template <class F>
void for_row_blocks(int64_t rows, const F& f) {
  at::parallel_for(0, row_blocks(rows), 1, [&](int64_t b0, int64_t b1) {
    for (int64_t b = b0; b < b1; ++b) {
      const int64_t begin = b * kRowBlock;
      f(begin, begin + kRowBlock < rows ? begin + kRowBlock : rows, b);
    }
  });
}

// pass(begin, end, sum) on each block, writing (not adding) that block's `width` sums to sum[0, width); then
// out = the blocks' sums added in block order. With at most one block, pass writes to out directly (an empty
// range included, so out is always written).
template <class Pass>
void sum_over_row_blocks(int64_t rows, int64_t width, float* out, const Pass& pass) {
  const int64_t blocks = row_blocks(rows);
  if (blocks <= 1) return pass(0, rows, out);
  std::vector<float> sums(static_cast<size_t>(blocks * width));
  for_row_blocks(rows, [&](int64_t begin, int64_t end, int64_t b) { pass(begin, end, sums.data() + b * width); });
  std::copy(sums.begin(), sums.begin() + width, out);
  for (int64_t b = 1; b < blocks; ++b) {
    for (int64_t j = 0; j < width; ++j) out[j] += sums[static_cast<size_t>(b * width + j)];
  }
}

}  // namespace mil
