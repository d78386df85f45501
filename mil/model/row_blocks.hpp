#pragma once
// Rows of a bag split into fixed blocks of kRowBlock that run in parallel on libtorch's threads. A block is
// the unit of work and of summation: a sum over rows is taken per block, then over the blocks in order, so
// it is the same for any thread count (a bag of up to kRowBlock rows is one block, summed as one loop).
#include <ATen/Parallel.h>

#include <cstdint>

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

}  // namespace mil
