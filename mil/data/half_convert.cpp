#include "mil/data/half_convert.hpp"

#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>
#include <immintrin.h>

namespace mil {
namespace {

bool has_f16c() {
  static const bool yes = __builtin_cpu_supports("f16c") && __builtin_cpu_supports("avx");
  return yes;
}

// Exponent bits all ones in a float16: Inf (input already checked finite, so never NaN here).
bool is_half_inf(uint16_t h) {
  return (h & 0x7c00u) == 0x7c00u;
}

__attribute__((target("avx,f16c"))) void half_to_float_f16c(const uint16_t* src, float* dst, int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(src + i));
    _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(h));
  }
  for (; i < n; ++i) dst[i] = c10::detail::fp16_ieee_to_fp32_value(src[i]);
}

__attribute__((target("avx,f16c"))) int64_t float_to_half_f16c(const float* src, uint16_t* dst, int64_t n) {
  int64_t i = 0;
  const __m128i exponent = _mm_set1_epi16(0x7c00);
  __m128i infs = _mm_setzero_si128();  // per lane: -1 for each Inf seen (16-bit counters, flushed below)
  int64_t overflow = 0;
  int64_t since_flush = 0;
  for (; i + 8 <= n; i += 8) {
    const __m128i h = _mm256_cvtps_ph(_mm256_loadu_ps(src + i), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    _mm_storeu_si128(reinterpret_cast<__m128i*>(dst + i), h);
    infs = _mm_add_epi16(infs, _mm_cmpeq_epi16(_mm_and_si128(h, exponent), exponent));
    if (++since_flush == 30000) {  // before a 16-bit lane can wrap
      alignas(16) int16_t lanes[8];
      _mm_store_si128(reinterpret_cast<__m128i*>(lanes), infs);
      for (int16_t v : lanes) overflow -= v;
      infs = _mm_setzero_si128();
      since_flush = 0;
    }
  }
  alignas(16) int16_t lanes[8];
  _mm_store_si128(reinterpret_cast<__m128i*>(lanes), infs);
  for (int16_t v : lanes) overflow -= v;
  for (; i < n; ++i) {
    dst[i] = c10::detail::fp16_ieee_from_fp32_value(src[i]);
    overflow += is_half_inf(dst[i]) ? 1 : 0;
  }
  return overflow;
}

}  // namespace

void half_to_float(const uint16_t* src, float* dst, int64_t n) {
  if (has_f16c()) return half_to_float_f16c(src, dst, n);
  for (int64_t i = 0; i < n; ++i) dst[i] = c10::detail::fp16_ieee_to_fp32_value(src[i]);
}

int64_t float_to_half(const float* src, uint16_t* dst, int64_t n) {
  if (has_f16c()) return float_to_half_f16c(src, dst, n);
  int64_t overflow = 0;
  for (int64_t i = 0; i < n; ++i) {
    dst[i] = c10::detail::fp16_ieee_from_fp32_value(src[i]);
    overflow += is_half_inf(dst[i]) ? 1 : 0;
  }
  return overflow;
}

int64_t float_to_bfloat16(const float* src, uint16_t* dst, int64_t n) {
  int64_t overflow = 0;
  for (int64_t i = 0; i < n; ++i) {
    dst[i] = c10::detail::round_to_nearest_even(src[i]);
    overflow += (dst[i] & 0x7f80u) == 0x7f80u ? 1 : 0;  // exponent all ones: Inf
  }
  return overflow;
}

void double_to_float(const double* src, float* dst, int64_t n) {
  for (int64_t i = 0; i < n; ++i) dst[i] = static_cast<float>(src[i]);
}

}  // namespace mil
