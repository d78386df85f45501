#pragma once
// float16 <-> float32 conversions for the bag loader, as plain loops on the calling thread (F16C
// instructions where the CPU has them): the loader runs on its own thread, and torch's conversions there
// would start a second OpenMP team competing with training for the cores. Results equal torch's
// `.to(torch::kHalf)` / `.to(torch::kFloat)` bit for bit (round to nearest even).
#include <cstdint>

namespace mil {

void half_to_float(const uint16_t* src, float* dst, int64_t n);
// Returns how many values overflowed to +-Inf (|x| >= 65520, beyond float16's range).
int64_t float_to_half(const float* src, uint16_t* dst, int64_t n);
// float32 -> bfloat16 bits, rounded to nearest even as torch's `.to(torch::kBFloat16)` (finite input). Returns
// how many values overflowed to +-Inf (|x| beyond bfloat16's largest finite value, ~3.39e38).
int64_t float_to_bfloat16(const float* src, uint16_t* dst, int64_t n);
void double_to_float(const double* src, float* dst, int64_t n);

}  // namespace mil
