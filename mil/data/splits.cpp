#include "mil/data/splits.hpp"

#include <algorithm>
#include <array>
#include <cmath>
#include <map>
#include <unordered_map>
#include <utility>

#include "mil/data/sampler.hpp"
#include "mil/io/csv.hpp"
#include "mil/util/error.hpp"

namespace mil {
namespace {

// Members of each stratum, ascending ids, each list shuffled by its own (seed, stratum) stream.
std::map<int, std::vector<int64_t>> shuffled_strata(const std::vector<int>& strata, uint64_t seed) {
  std::map<int, std::vector<int64_t>> groups;
  for (size_t i = 0; i < strata.size(); ++i) groups[strata[i]].push_back(static_cast<int64_t>(i));
  for (auto& [stratum, members] : groups) {
    SplitMix64 rng(mix64(mix64(seed) ^ static_cast<uint64_t>(static_cast<int64_t>(stratum))));
    fisher_yates_shuffle(members, rng);
  }
  return groups;
}

void sort_split(Split& split) {
  std::sort(split.train.begin(), split.train.end());
  std::sort(split.val.begin(), split.val.end());
  std::sort(split.test.begin(), split.test.end());
  std::sort(split.unassigned.begin(), split.unassigned.end());
}

bool is_padding(const std::string& cell) {
  return cell.empty() || cell == "NaN" || cell == "nan";
}

constexpr std::array<const char*, 3> kColumns = {"train", "val", "test"};  // of a CLAM split file

// The train, val and test columns of a CLAM split file (kColumns' order), each exactly once.
std::array<size_t, 3> split_columns(const io::CsvTable& csv) {
  const std::vector<std::string>& header = csv.header;
  std::array<size_t, 3> column{};
  for (size_t c = 0; c < kColumns.size(); ++c) {
    const auto first = std::find(header.begin(), header.end(), kColumns[c]);
    if (first == header.end()) {
      throw Error(csv.path, kColumns[c], "column missing from the header (expected columns train,val,test)");
    }
    if (std::find(first + 1, header.end(), kColumns[c]) != header.end()) {
      throw Error(csv.path, kColumns[c], "column appears twice in the header");
    }
    column[c] = static_cast<size_t>(first - header.begin());
  }
  return column;
}

}  // namespace

Split stratified_holdout(const std::vector<int>& strata, double val_fraction, uint64_t seed) {
  if (!(val_fraction >= 0 && val_fraction < 1)) {  // written so that NaN fails too
    throw Error("", "--val-fraction", "must be in [0, 1), got " + std::to_string(val_fraction));
  }
  if (strata.empty()) throw Error("no slides to split");
  Split split;
  for (const auto& [stratum, members] : shuffled_strata(strata, seed)) {
    const int64_t count = static_cast<int64_t>(members.size());
    int64_t n_val = 0;
    if (count >= 2 && val_fraction > 0) {
      n_val = std::clamp<int64_t>(std::llround(val_fraction * static_cast<double>(count)), 1, count - 1);
    }
    split.val.insert(split.val.end(), members.begin(), members.begin() + n_val);
    split.train.insert(split.train.end(), members.begin() + n_val, members.end());
  }
  sort_split(split);
  return split;
}

Split stratified_kfold(const std::vector<int>& strata, int k, int fold, uint64_t seed) {
  const int64_t n = static_cast<int64_t>(strata.size());
  if (k < 2) throw Error("", "--folds", "must be >= 2, got " + std::to_string(k));
  if (k > n) {
    throw Error("", "--folds",
                std::to_string(k) + " folds of " + std::to_string(n) + " slides would leave a fold empty");
  }
  if (fold < 0 || fold >= k) {
    throw Error(
        "", "--fold",
        "must be in [0, " + std::to_string(k) + ") for --folds " + std::to_string(k) + ", got " + std::to_string(fold));
  }
  Split split;
  int64_t position = 0;
  for (const auto& [stratum, members] : shuffled_strata(strata, seed)) {
    for (int64_t slide : members) {
      (position++ % k == fold ? split.val : split.train).push_back(slide);
    }
  }
  sort_split(split);
  return split;
}

Split read_clam_split_csv(const std::string& path, const std::vector<std::string>& slide_ids) {
  std::unordered_map<std::string, int64_t> index_of;
  for (size_t i = 0; i < slide_ids.size(); ++i) {
    if (!index_of.emplace(slide_ids[i], static_cast<int64_t>(i)).second) {
      throw Error("", slide_ids[i], "appears twice in the slide list, so a split file cannot name it unambiguously");
    }
  }

  const io::CsvTable csv = io::read_csv(path);
  const std::array<size_t, 3> column = split_columns(csv);
  struct Seen {
    size_t column;
    int64_t line;
  };
  std::unordered_map<int64_t, Seen> seen;
  Split split;
  const std::array<std::vector<int64_t>*, 3> out = {&split.train, &split.val, &split.test};
  for (size_t r = 0; r < csv.rows.size(); ++r) {
    const int64_t line = static_cast<int64_t>(csv.line_numbers[r]);
    for (size_t c = 0; c < kColumns.size(); ++c) {
      const std::string& id = csv.rows[r][column[c]];
      if (is_padding(id)) continue;
      const auto it = index_of.find(id);
      if (it == index_of.end()) {
        std::string reason = "in column '" + std::string(kColumns[c]) + "' (line " + std::to_string(line) +
                             ") is not a slide of the dataset";
        if (id == "True" || id == "False") reason += "; this looks like splits_k_bool.csv, pass splits_k.csv";
        throw Error(path, id, reason);
      }
      const auto [prev, inserted] = seen.emplace(it->second, Seen{c, line});
      if (!inserted) {
        const Seen& s = prev->second;
        if (s.column == c) {
          throw Error(path, id,
                      "listed twice in column '" + std::string(kColumns[c]) + "' (lines " + std::to_string(s.line) +
                          " and " + std::to_string(line) + ")");
        }
        throw Error(path, id,
                    "listed in both column '" + std::string(kColumns[s.column]) + "' (line " + std::to_string(s.line) +
                        ") and column '" + kColumns[c] + "' (line " + std::to_string(line) + ")");
      }
      out[c]->push_back(it->second);
    }
  }
  for (size_t i = 0; i < slide_ids.size(); ++i) {
    if (seen.count(static_cast<int64_t>(i)) == 0) split.unassigned.push_back(static_cast<int64_t>(i));
  }
  sort_split(split);
  return split;
}

}  // namespace mil
