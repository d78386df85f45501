#pragma once
// The per-bag passes of a packed step (mil/model/segment_ops.hpp) as libtorch ops over a segment index, so
// that they run wherever the pack lies (a GPU's path; tests run it on the CPU against the loops). Bag b owns
// rows [off[b], off[b + 1]) of every [T, *] matrix; reductions over a bag's rows are scatter/index_add
// over `seg` (the bag of each row), never over padding, so nothing outside a bag can win its max-pool or
// take a share of its softmax. Attention values are kept [T, C] here (row r, class k); `to_blocks` converts
// them to segment_ops' layout of C * T values, bag b's [C, n_b] block at C * off[b].
#include <torch/torch.h>

#include <cstdint>
#include <vector>

namespace mil::segment_torch {

// A pack's segment indices on its device, built once per pack.
struct Segments {
  Segments(const std::vector<int64_t>& off, int64_t c, const torch::Device& device);
  int64_t bags = 0;
  int64_t rows = 0;
  int64_t classes = 0;
  torch::Tensor seg;         // [T] int64: the bag of each row
  torch::Tensor seg_by_col;  // [T, C] int64: seg repeated per class (scatter's index)
  torch::Tensor row_by_col;  // [T, C] int64: the row number repeated per class
  torch::Tensor block_pos;   // [T, C] int64: where (r, k) sits in segment_ops' block layout
};

// Max over each bag's rows of each column of `logits` [T, C] into max_val and max_idx [B, C] (the first
// row wins ties, as segment::max_pool; max_idx holds rows of the pack).
void max_pool(const torch::Tensor& logits, const Segments& s, torch::Tensor& max_val, torch::Tensor& max_idx);

// a [T, C] = softmax over the bag's rows of (qc[b, k] · q[r]) / scale; qc is [B * C, H]. Also returns
// qc's rows per pack row, [T, C, H], which query_grad takes back.
torch::Tensor attention(const torch::Tensor& q, const torch::Tensor& qc, const Segments& s, double scale,
                        torch::Tensor& qc_rows);

// bag_rep [B, C * D] = sum over the bag's rows r of a[r, k] v[r, :] (written).
void pool(const torch::Tensor& a, const torch::Tensor& v, const Segments& s, torch::Tensor& bag_rep);

// d_a [T, C] = d_bag_rep[b, k, :] · v[r, :]; and with `d_v` defined, d_v [T, D] = sum_k a[r, k] d_bag_rep[b, k, :]
// (written). d_bag_rep is [B, C * D].
torch::Tensor pool_grads(const torch::Tensor& a, const torch::Tensor& d_bag_rep, const torch::Tensor& v,
                         const Segments& s, torch::Tensor* d_v);

// The scores' gradient d_s [T, C] = (softmax's backward of d_a over each bag's rows) / scale.
torch::Tensor attention_grad_scores(const torch::Tensor& a, const torch::Tensor& d_a, const Segments& s, double scale);

// d_q [T, H] = sum_k d_s[r, k] qc[b, k, :] (written), then d(qc[b, k]) = sum_r d_s[r, k] q[r, :] added to
// d_q's row max_idx[b, k] (qc's rows are q's rows).
void query_grad(const torch::Tensor& d_s, const torch::Tensor& q, const torch::Tensor& qc_rows,
                const torch::Tensor& max_idx, const Segments& s, torch::Tensor& d_q);

// Attention [T, C] in segment_ops' block layout [C * T].
torch::Tensor to_blocks(const torch::Tensor& a, const Segments& s);

}  // namespace mil::segment_torch
