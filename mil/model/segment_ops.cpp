#include "mil/model/segment_ops.hpp"

#include <algorithm>
#include <cmath>

namespace mil::segment {
namespace {

// Eight independent partial sums, so the compiler vectorises the loop without reassociating a single sum.
float dot(const float* a, const float* b, int64_t n) {
  float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    for (int j = 0; j < 8; ++j) acc[j] += a[i + j] * b[i + j];
  }
  float s = 0;
  for (; i < n; ++i) s += a[i] * b[i];
  return s + ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
}

void axpy(float alpha, const float* x, float* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] += alpha * x[i];
}

}  // namespace

void max_pool(Rows logits, int64_t c, const Offsets& off, float* max_val, int64_t* max_idx) {
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

void attention(Rows q, const float* qc, int64_t h, int64_t c, const Offsets& off, double scale, float* a) {
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

void pool(const float* a, Rows v, int64_t d, int64_t c, const Offsets& off, float* bag_rep) {
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

void pool_grad_attention(const float* d_bag_rep, Rows v, int64_t d, int64_t c, const Offsets& off, float* d_a) {
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

void pool_grad_values(const float* a, const float* d_bag_rep, int64_t d, int64_t c, const Offsets& off, MutRows d_v) {
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

void attention_grad_scores(const float* a, float* d_a, int64_t c, const Offsets& off, double scale) {
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

void query_grad(const float* d_s, Rows q, const float* qc, const int64_t* max_idx, int64_t h, int64_t c,
                const Offsets& off, MutRows d_q) {
  const int64_t bags = static_cast<int64_t>(off.size()) - 1;
  std::vector<float> d_qc(static_cast<size_t>(c * h));
  for (int64_t b = 0; b < bags; ++b) {
    const int64_t n = off[b + 1] - off[b];
    for (float& x : d_qc) x = 0;
    for (int64_t j = 0; j < n; ++j) {
      const int64_t r = off[b] + j;
      float* out = d_q.row(r);
      for (int64_t i = 0; i < h; ++i) out[i] = 0;
      for (int64_t k = 0; k < c; ++k) {
        const float g = d_s[c * off[b] + k * n + j];
        axpy(g, qc + (b * c + k) * h, out, h);
        axpy(g, q.row(r), d_qc.data() + k * h, h);
      }
    }
    // After every row of the bag is written: the critical row's own term from the scores comes first.
    for (int64_t k = 0; k < c; ++k) axpy(1.0f, d_qc.data() + k * h, d_q.row(max_idx[b * c + k]), h);
  }
}

}  // namespace mil::segment
