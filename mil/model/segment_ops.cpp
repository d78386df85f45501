#include "mil/model/segment_ops.hpp"

#include <algorithm>
#include <cmath>

#include "mil/model/row_blocks.hpp"

// One clone per instruction set, picked at load time (as row_ops): the loops vectorise to the widest the
// processor has.
#define MIL_SEGMENT_CLONES __attribute__((target_clones("default", "avx2", "avx512f")))

namespace mil::segment {
namespace {

// 32 independent partial sums (two AVX-512 registers, four AVX2 ones), so the compiler vectorises the loop
// without reassociating a single sum and the additions do not wait on each other; combined pairwise.
inline __attribute__((always_inline)) float dot(const float* a, const float* b, int64_t n) {
  constexpr int64_t kLanes = 32;
  float acc[kLanes] = {};
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes) {
    for (int64_t j = 0; j < kLanes; ++j) acc[j] += a[i + j] * b[i + j];
  }
  for (; i < n; ++i) acc[0] += a[i] * b[i];
  for (int64_t half = kLanes / 2; half > 0; half /= 2) {
    for (int64_t j = 0; j < half; ++j) acc[j] += acc[j + half];
  }
  return acc[0];
}

inline __attribute__((always_inline)) void axpy(float alpha, const float* x, float* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] += alpha * x[i];
}

}  // namespace

MIL_SEGMENT_CLONES void max_pool(Rows logits, int64_t c, const Offsets& off, float* max_val, int64_t* max_idx) {
  const int64_t bags = static_cast<int64_t>(off.size()) - 1;
  for (int64_t b = 0; b < bags; ++b) {
    for (int64_t k = 0; k < c; ++k) {
      int64_t best = off[b];
      float v = logits.row(best)[k];
      for (int64_t r = off[b] + 1; r < off[b + 1] && !std::isnan(v); ++r) {
        const float x = logits.row(r)[k];
        if (x > v || std::isnan(x)) {
          v = x;
          best = r;
        }
      }
      max_val[b * c + k] = v;
      max_idx[b * c + k] = best;
    }
  }
}

MIL_SEGMENT_CLONES void attention(Rows q, const float* qc, int64_t h, int64_t c, const Offsets& off, double scale,
                                  float* a) {
  const int64_t bags = static_cast<int64_t>(off.size()) - 1;
  const float inv_scale = static_cast<float>(1.0 / scale);
  for (int64_t b = 0; b < bags; ++b) {
    const int64_t n = off[b + 1] - off[b];
    for (int64_t k = 0; k < c; ++k) {
      float* row = a + c * off[b] + k * n;
      const float* query = qc + (b * c + k) * h;
      float top = -INFINITY;
      for (int64_t j = 0; j < n; ++j) {
        row[j] = dot(query, q.row(off[b] + j), h) * inv_scale;
        top = std::max(top, row[j]);
      }
      float sum = 0;
      for (int64_t j = 0; j < n; ++j) {
        row[j] = std::exp(row[j] - top);
        sum += row[j];
      }
      for (int64_t j = 0; j < n; ++j) row[j] /= sum;
    }
  }
}

MIL_SEGMENT_CLONES void pool(const float* a, Rows v, int64_t d, int64_t c, const Offsets& off, float* bag_rep) {
  const int64_t bags = static_cast<int64_t>(off.size()) - 1;
  for (int64_t b = 0; b < bags; ++b) {
    const int64_t n = off[b + 1] - off[b];
    for (int64_t k = 0; k < c; ++k) {
      float* out = bag_rep + (b * c + k) * d;
      const float* row = a + c * off[b] + k * n;
      for (int64_t i = 0; i < d; ++i) out[i] = 0;
      for (int64_t j = 0; j < n; ++j) axpy(row[j], v.row(off[b] + j), out, d);
    }
  }
}

MIL_SEGMENT_CLONES void pool_grad_attention(const float* d_bag_rep, Rows v, int64_t d, int64_t c, const Offsets& off,
                                            float* d_a) {
  const int64_t bags = static_cast<int64_t>(off.size()) - 1;
  for (int64_t b = 0; b < bags; ++b) {
    const int64_t n = off[b + 1] - off[b];
    for (int64_t k = 0; k < c; ++k) {
      float* row = d_a + c * off[b] + k * n;
      const float* g = d_bag_rep + (b * c + k) * d;
      for (int64_t j = 0; j < n; ++j) row[j] = dot(g, v.row(off[b] + j), d);
    }
  }
}

MIL_SEGMENT_CLONES void pool_grad_values(const float* a, const float* d_bag_rep, int64_t d, int64_t c,
                                         const Offsets& off, MutRows d_v) {
  const int64_t bags = static_cast<int64_t>(off.size()) - 1;
  for (int64_t b = 0; b < bags; ++b) {
    const int64_t n = off[b + 1] - off[b];
    for (int64_t j = 0; j < n; ++j) {
      float* out = d_v.row(off[b] + j);
      for (int64_t i = 0; i < d; ++i) out[i] = 0;
      for (int64_t k = 0; k < c; ++k) axpy(a[c * off[b] + k * n + j], d_bag_rep + (b * c + k) * d, out, d);
    }
  }
}

MIL_SEGMENT_CLONES void attention_grad_scores(const float* a, float* d_a, int64_t c, const Offsets& off, double scale) {
  const int64_t bags = static_cast<int64_t>(off.size()) - 1;
  const float inv_scale = static_cast<float>(1.0 / scale);
  for (int64_t b = 0; b < bags; ++b) {
    const int64_t n = off[b + 1] - off[b];
    for (int64_t k = 0; k < c; ++k) {
      const float* p = a + c * off[b] + k * n;
      float* g = d_a + c * off[b] + k * n;
      const float inner = dot(p, g, n);  // softmax: ds_j = a_j (da_j - sum_i a_i da_i)
      for (int64_t j = 0; j < n; ++j) g[j] = p[j] * (g[j] - inner) * inv_scale;
    }
  }
}

namespace {

// query_grad over rows [begin, end) of one bag: their rows of d_q, and their part of d(qc) into d_qc ([C, H],
// written).
MIL_SEGMENT_CLONES void query_grad_rows(const float* d_s, Rows q, const float* qc, int64_t h, int64_t c, int64_t first,
                                        int64_t n, int64_t begin, int64_t end, MutRows d_q, float* d_qc) {
  for (int64_t i = 0; i < c * h; ++i) d_qc[i] = 0;
  for (int64_t j = begin; j < end; ++j) {
    const int64_t r = first + j;
    float* out = d_q.row(r);
    for (int64_t i = 0; i < h; ++i) out[i] = 0;
    for (int64_t k = 0; k < c; ++k) {
      const float g = d_s[c * first + k * n + j];
      axpy(g, qc + k * h, out, h);
      axpy(g, q.row(r), d_qc + k * h, h);
    }
  }
}

}  // namespace

void query_grad(const float* d_s, Rows q, const float* qc, const int64_t* max_idx, int64_t h, int64_t c,
                const Offsets& off, MutRows d_q) {
  const int64_t bags = static_cast<int64_t>(off.size()) - 1;
  std::vector<float> d_qc(static_cast<size_t>(c * h));  // [C, H]: d(qc) of the bag, summed over its row blocks
  for (int64_t b = 0; b < bags; ++b) {
    const int64_t n = off[b + 1] - off[b];
    sum_over_row_blocks(n, c * h, d_qc.data(), [&](int64_t begin, int64_t end, float* part) {
      query_grad_rows(d_s, q, qc + b * c * h, h, c, off[b], n, begin, end, d_q, part);
    });
    // After every row of the bag is written: the critical row's own term from the scores comes first.
    for (int64_t k = 0; k < c; ++k) axpy(1.0f, d_qc.data() + k * h, d_q.row(max_idx[b * c + k]), h);
  }
}

}  // namespace mil::segment
