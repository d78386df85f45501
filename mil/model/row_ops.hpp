#pragma once
// Elementwise passes of the hand-written steps (DsmilStep, PackedStep) over [rows, h] float32 blocks, each
// fused with what the step needs next from the same rows (the bias gradient's column sums), so that a
// block is walked once instead of by two or three libtorch ops. CPU float32 only; each function picks the
// widest vector instructions the processor has at run time, and runs its rows in blocks on libtorch's
// threads (mil/model/row_blocks.hpp: the column sums are the same for any thread count).
#include <cstdint>

namespace mil::row_ops {

// A [rows, h] block given by its first element and the distance between rows (a view's stride).
struct Block {
  float* p;
  int64_t rows;
  int64_t h;
  int64_t stride;
  float* row(int64_t r) const { return p + r * stride; }
};

// tanh of one value, as tanh_inplace computes it: within 2.5e-7 relative of std::tanh over all floats
// (tested); NaN stays NaN, ±inf gives ±1.
float tanh(float x);

// y = tanh(y), in place.
void tanh_inplace(Block y);

// y = max(y, 0), in place; NaN stays NaN (as torch::relu_).
void relu_inplace(Block y);

// Where a backward pass below is given `rounded`, it also writes its result d rounded to bfloat16 there (the
// bits libtorch stores, rounded as it rounds), rows `stride` apart: the bf16 step's next operand, in the
// same pass.
struct Rounded {
  uint16_t* p = nullptr;
  int64_t stride = 0;
};

// Backward of q = tanh(u): d = d * (1 - q²) in place, and col_sum[j] = Σ_r d[r, j] (the bias gradient;
// written, not added, so that a bag's gradient is summed on its own before it joins the others').
void tanh_grad(Block q, Block d, float* col_sum, Rounded rounded = {});

// Backward of z = relu(u) given z: d = d where z > 0, else 0, in place, and col_sum[j] = Σ_r d[r, j].
void relu_grad(Block z, Block d, float* col_sum, Rounded rounded = {});

}  // namespace mil::row_ops
