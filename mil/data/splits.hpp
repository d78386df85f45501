#pragma once
// Train / validation / test splits of the slide list: generated (stratified hold-out, stratified k-fold),
// deterministic from a seed through the SplitMix64 generator, or read from CLAM's splits_k.csv.
#include <cstdint>
#include <string>
#include <vector>

namespace mil {

// Indices into the slide list, each sorted ascending and pairwise disjoint.
struct Split {
  std::vector<int64_t> train, val, test;
  // Slides in no set: only read_clam_split_csv() leaves any (slides the CSV does not list).
  std::vector<int64_t> unassigned;
};

// strata[i] is the stratum of slide i (e.g. its class; the caller maps a multi-label row to one id).
// Each stratum's members are shuffled with SplitMix64 seeded from (seed, stratum id), so one stratum's
// split does not change when slides of another stratum are added or removed.
//
// Stratum of c >= 2 slides: clamp(round(val_fraction * c), 1, c - 1) go to val (0 when val_fraction == 0;
// round is half away from zero), the rest to train. A stratum of one slide goes to train. test is empty.
// Throws mil::Error naming --val-fraction unless 0 <= val_fraction < 1, or on an empty strata list.
Split stratified_holdout(const std::vector<int>& strata, double val_fraction, uint64_t seed);

// val = fold `fold` of k, train = the other folds, test empty. Strata are taken in ascending id order,
// each one's members shuffled as in stratified_holdout(), and the concatenation is dealt to folds round
// robin. So the folds are disjoint and cover all slides, every stratum's count differs by at most 1
// between folds, and so do the folds' sizes.
// A stratum with fewer than k slides is allowed: it is then absent from the val set of some folds (its
// metrics, e.g. that class's AUC, are undefined there). Throws mil::Error naming --folds unless
// 2 <= k <= number of slides (an empty fold cannot be validated on), naming --fold unless 0 <= fold < k.
Split stratified_kfold(const std::vector<int>& strata, int k, int fold, uint64_t seed);

// CLAM's splits_k.csv: a header naming the columns train, val and test (in any order; other columns,
// such as pandas' unnamed leading index column, are ignored), then rows whose cells in those columns are
// slide ids, or empty / "NaN" where a column is shorter than the others. RFC 4180 quoting and CRLF line
// ends are accepted. Ids map to their index in `slide_ids`; slides the CSV does not list go to
// `unassigned`. Throws mil::Error(path, column or id, reason) when the file cannot be read, a column is
// missing or repeated, a row has a different number of cells than the header, an id is not in
// `slide_ids`, or an id is listed twice (in one column or in two).
Split read_clam_split_csv(const std::string& path, const std::vector<std::string>& slide_ids);

}  // namespace mil
