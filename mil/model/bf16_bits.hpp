#pragma once
// bfloat16 as libtorch stores it: the upper 16 bits of a float32, passed as uint16_t. Inline, so that the
// loops of bf16_ops and row_ops that use them vectorise.
#include <cstdint>
#include <cstring>

namespace mil::bf16_bits {

// Widening is exact.
inline __attribute__((always_inline)) float to_float(uint16_t b) {
  const uint32_t bits = static_cast<uint32_t>(b) << 16;
  float f;
  std::memcpy(&f, &bits, sizeof f);
  return f;
}

// Round to nearest even on the upper 16 bits; NaN (any payload) as libtorch's quiet 0x7FC0.
inline __attribute__((always_inline)) uint16_t round(float f) {
  uint32_t bits;
  std::memcpy(&bits, &f, sizeof bits);
  const uint32_t rounded = (bits + 0x7FFFu + ((bits >> 16) & 1u)) >> 16;
  return (bits & 0x7FFFFFFFu) > 0x7F800000u ? uint16_t{0x7FC0} : static_cast<uint16_t>(rounded);
}

}  // namespace mil::bf16_bits
