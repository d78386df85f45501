#include "mil/model/segment_torch_ops.hpp"

#include <limits>

namespace mil::segment_torch {
namespace {

// A host vector of int64 on `device`, in one copy (from pinned memory on a GPU: the host does not wait).
torch::Tensor to_device(std::vector<int64_t>& v, const torch::Device& device) {
  torch::Tensor t = torch::from_blob(v.data(), {static_cast<int64_t>(v.size())}, torch::kLong);
  if (device.is_cpu()) return t.clone();
  return t.pin_memory().to(device, /*non_blocking=*/true);
}

// Per bag and class: zeros [B, C] plus the sum of `values` [T, C] over the bag's rows.
torch::Tensor segment_sum(const torch::Tensor& values, const Segments& s) {
  return torch::zeros({s.bags, s.classes}, values.options()).index_add_(0, s.seg, values);
}

// Per bag and class: the max of `values` [T, C] over the bag's rows.
torch::Tensor segment_max(const torch::Tensor& values, const Segments& s) {
  return torch::full({s.bags, s.classes}, -std::numeric_limits<float>::infinity(), values.options())
      .scatter_reduce_(0, s.seg_by_col, values, "amax", /*include_self=*/true);
}

}  // namespace

Segments::Segments(const std::vector<int64_t>& off, int64_t c, const torch::Device& device)
    : bags(static_cast<int64_t>(off.size()) - 1), rows(off.back()), classes(c) {
  // One host buffer, one copy: seg [T], then seg_by_col, row_by_col and block_pos, [T, C] each.
  const int64_t tc = rows * c;
  std::vector<int64_t> host(static_cast<size_t>(rows + 3 * tc));
  for (int64_t b = 0; b < bags; ++b) {
    const int64_t n = off[b + 1] - off[b];
    for (int64_t r = off[b]; r < off[b + 1]; ++r) {
      host[static_cast<size_t>(r)] = b;
      for (int64_t k = 0; k < c; ++k) {
        const auto i = static_cast<size_t>(rows + r * c + k);
        host[i] = b;
        host[i + tc] = r;
        host[i + 2 * tc] = c * off[b] + k * n + (r - off[b]);
      }
    }
  }
  const torch::Tensor all = to_device(host, device);
  seg = all.narrow(0, 0, rows);
  seg_by_col = all.narrow(0, rows, tc).view({rows, c});
  row_by_col = all.narrow(0, rows + tc, tc).view({rows, c});
  block_pos = all.narrow(0, rows + 2 * tc, tc).view({rows, c});
}

void max_pool(const torch::Tensor& logits, const Segments& s, torch::Tensor& max_val, torch::Tensor& max_idx) {
  max_val.copy_(segment_max(logits, s));
  // The first row holding its bag's max (a NaN counts as one, as it wins torch::max): the least such row.
  const torch::Tensor holds = logits.eq(max_val.index_select(0, s.seg)).logical_or_(logits.isnan());
  const torch::Tensor candidates = torch::where(holds, s.row_by_col, torch::full_like(s.row_by_col, s.rows));
  max_idx.fill_(s.rows).scatter_reduce_(0, s.seg_by_col, candidates, "amin", /*include_self=*/true);
  max_idx.clamp_max_(s.rows - 1);  // in range whatever the values: a bad index would end a GPU process
}

torch::Tensor attention(const torch::Tensor& q, const torch::Tensor& qc, const Segments& s, double scale,
                        torch::Tensor& qc_rows) {
  const int64_t h = q.size(1);
  qc_rows = qc.view({s.bags, s.classes, h}).index_select(0, s.seg);                         // [T, C, H]
  const torch::Tensor scores = torch::bmm(qc_rows, q.unsqueeze(2)).squeeze(2).div_(scale);  // [T, C]
  const torch::Tensor e = scores.sub_(segment_max(scores, s).index_select(0, s.seg)).exp_();
  return e.div_(segment_sum(e, s).index_select(0, s.seg));
}

void pool(const torch::Tensor& a, const torch::Tensor& v, const Segments& s, torch::Tensor& bag_rep) {
  const int64_t d = v.size(1);
  const torch::Tensor rep = bag_rep.view({s.bags, s.classes, d});
  for (int64_t k = 0; k < s.classes; ++k) {
    rep.select(1, k).copy_(
        torch::zeros({s.bags, d}, v.options()).index_add_(0, s.seg, v * a.select(1, k).unsqueeze(1)));
  }
}

torch::Tensor pool_grads(const torch::Tensor& a, const torch::Tensor& d_bag_rep, const torch::Tensor& v,
                         const Segments& s, torch::Tensor* d_v) {
  const int64_t d = v.size(1);
  const torch::Tensor rows = d_bag_rep.view({s.bags, s.classes, d}).index_select(0, s.seg);  // [T, C, D]
  if (d_v != nullptr) d_v->copy_(torch::bmm(a.unsqueeze(1), rows).squeeze(1));
  return torch::bmm(rows, v.unsqueeze(2)).squeeze(2);
}

torch::Tensor attention_grad_scores(const torch::Tensor& a, const torch::Tensor& d_a, const Segments& s, double scale) {
  const torch::Tensor ad = a * d_a;
  return ad.sub_(a * segment_sum(ad, s).index_select(0, s.seg)).div_(scale);
}

void query_grad(const torch::Tensor& d_s, const torch::Tensor& q, const torch::Tensor& qc_rows,
                const torch::Tensor& max_idx, const Segments& s, torch::Tensor& d_q) {
  const int64_t h = q.size(1);
  d_q.copy_(torch::bmm(d_s.unsqueeze(1), qc_rows).squeeze(1));
  const torch::Tensor d_qc =
      torch::zeros({s.bags, s.classes, h}, q.options()).index_add_(0, s.seg, d_s.unsqueeze(2) * q.unsqueeze(1));
  d_q.index_add_(0, max_idx.reshape({-1}), d_qc.view({s.bags * s.classes, h}));
}

torch::Tensor to_blocks(const torch::Tensor& a, const Segments& s) {
  return torch::empty({s.rows * s.classes}, a.options()).scatter_(0, s.block_pos.reshape({-1}), a.reshape({-1}));
}

}  // namespace mil::segment_torch
