#pragma once
// The per-bag parts of a packed DSMIL step (mil/model/packed_step.hpp), as plain loops over ragged
// segments of rows: bag b owns rows [off[b], off[b + 1]) of every [T, *] matrix of the pack, and nothing
// else. There are no padding rows, so no row of another bag, and no filler, can win a bag's max-pool,
// become its critical instance or take a share of its attention: the masking that padded batches need
// for the softmax (and, easily forgotten, for the max and the argmax) has nothing to mask here.
//
// Attention values a and their gradients live in one float array of C * T values: bag b's block starts at
// C * off[b] and holds C rows of n_b = off[b + 1] - off[b] values (row k: class k's softmax over the
// bag's instances). CPU float32 only; these passes are a few C * T * max(D, 128) multiply-adds, small next
// to the pack's GEMMs.
// query_grad runs a bag's rows in blocks on libtorch's threads (row_blocks.hpp: the same sums for any
// thread count); the other passes run per bag on the caller's thread (threads measured no faster there).
#include <cstdint>
#include <vector>

namespace mil::segment {

// A row-major matrix given by its first element and the distance between rows (a view's stride).
struct Rows {
  const float* p;
  int64_t stride;
  const float* row(int64_t r) const { return p + r * stride; }
};
struct MutRows {
  float* p;
  int64_t stride;
  float* row(int64_t r) const { return p + r * stride; }
};

using Offsets = std::vector<int64_t>;

// Max over each bag's rows of each of the C columns of `logits` (first row wins ties; a NaN wins, as
// torch::max does): max_val and max_idx are [B, C], max_idx holding rows of the pack.
void max_pool(Rows logits, int64_t c, const Offsets& off, float* max_val, int64_t* max_idx);

// a = softmax over the bag's instances of (qc[b, k] · q[r]) / scale; qc is [B * C, H] (the critical queries).
void attention(Rows q, const float* qc, int64_t h, int64_t c, const Offsets& off, double scale, float* a);

// bag_rep[b, k, :] = sum over the bag's rows r of a[b, k, r] v[r, :]; bag_rep is [B, C, D].
void pool(const float* a, Rows v, int64_t d, int64_t c, const Offsets& off, float* bag_rep);

// d_a[b, k, r] = d_bag_rep[b, k, :] · v[r, :].
void pool_grad_attention(const float* d_bag_rep, Rows v, int64_t d, int64_t c, const Offsets& off, float* d_a);

// d_v[r, :] = sum over k of a[b, k, r] d_bag_rep[b, k, :] (overwrites d_v's rows).
void pool_grad_values(const float* a, const float* d_bag_rep, int64_t d, int64_t c, const Offsets& off, MutRows d_v);

// d_s = (softmax's backward of d_a) / scale, written over d_a (in place).
void attention_grad_scores(const float* a, float* d_a, int64_t c, const Offsets& off, double scale);

// Scores s[b, k, r] = qc[b, k] · q[r]: d_q[r, :] = sum_k d_s[b, k, r] qc[b, k, :] (overwrites d_q's rows),
// then d(qc[b, k]) = sum_r d_s[b, k, r] q[r, :] added to d_q's row max_idx[b, k] (qc's rows are q's rows).
void query_grad(const float* d_s, Rows q, const float* qc, const int64_t* max_idx, int64_t h, int64_t c,
                const Offsets& off, MutRows d_q);

}  // namespace mil::segment
