#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "mil/data/splits.hpp"
#include "mil/util/error.hpp"
#include "tests/test_util.hpp"

namespace mil {
namespace {

// 10 slides of stratum 0, 7 of stratum 3, 1 of stratum 5, 2 of stratum 1, interleaved.
std::vector<int> example_strata() {
  std::vector<int> strata;
  for (int i = 0; i < 10; ++i) strata.push_back(0);
  for (int i = 0; i < 7; ++i) strata.push_back(3);
  strata.push_back(5);
  strata.push_back(1);
  strata.push_back(1);
  std::vector<int> interleaved;
  for (size_t i = 0; i < strata.size(); ++i) interleaved.push_back(strata[(i * 7) % strata.size()]);
  return interleaved;
}

std::map<int, int64_t> count_by_stratum(const std::vector<int64_t>& idx, const std::vector<int>& strata) {
  std::map<int, int64_t> counts;
  for (int64_t i : idx) ++counts[strata[static_cast<size_t>(i)]];
  return counts;
}

// Sorted, disjoint, and together with `unassigned` exactly 0..n-1.
void expect_partition(const Split& s, size_t n) {
  for (const auto* v : {&s.train, &s.val, &s.test, &s.unassigned}) {
    EXPECT_TRUE(std::is_sorted(v->begin(), v->end()));
  }
  std::vector<int64_t> all;
  for (const auto* v : {&s.train, &s.val, &s.test, &s.unassigned}) all.insert(all.end(), v->begin(), v->end());
  std::sort(all.begin(), all.end());
  std::vector<int64_t> expected(n);
  for (size_t i = 0; i < n; ++i) expected[i] = static_cast<int64_t>(i);
  EXPECT_EQ(all, expected);
}

template <typename Fn>
void expect_error(Fn fn, const std::vector<std::string>& texts) {
  EXPECT_TRUE(test::throws_error_naming(fn, texts));
}

TEST(StratifiedHoldout, PerStratumCounts) {
  const std::vector<int> strata = example_strata();
  const Split s = stratified_holdout(strata, 0.25, 1);
  expect_partition(s, strata.size());
  EXPECT_TRUE(s.test.empty());
  EXPECT_TRUE(s.unassigned.empty());
  // round(2.5) = 3 of 10; round(1.75) = 2 of 7; round(0.5) = 1 of 2; a singleton stays in train.
  EXPECT_EQ(count_by_stratum(s.val, strata), (std::map<int, int64_t>{{0, 3}, {1, 1}, {3, 2}}));
  EXPECT_EQ(count_by_stratum(s.train, strata), (std::map<int, int64_t>{{0, 7}, {1, 1}, {3, 5}, {5, 1}}));
}

TEST(StratifiedHoldout, ClampsToOneValAndOneTrain) {
  const std::vector<int> strata = {0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1};
  // 1% of 10 rounds to 0 but a positive fraction gives at least one val slide per stratum.
  EXPECT_EQ(count_by_stratum(stratified_holdout(strata, 0.01, 3).val, strata),
            (std::map<int, int64_t>{{0, 1}, {1, 1}}));
  // 99% of 5 rounds to 5 but train keeps one slide per stratum.
  const Split s = stratified_holdout(strata, 0.99, 3);
  EXPECT_EQ(count_by_stratum(s.train, strata), (std::map<int, int64_t>{{0, 1}, {1, 1}}));
  EXPECT_TRUE(stratified_holdout(strata, 0.0, 3).val.empty());
}

TEST(StratifiedHoldout, DeterministicFromSeed) {
  std::vector<int> strata(200);
  for (size_t i = 0; i < strata.size(); ++i) strata[i] = static_cast<int>(i % 3);
  const Split a = stratified_holdout(strata, 0.2, 11);
  const Split b = stratified_holdout(strata, 0.2, 11);
  const Split c = stratified_holdout(strata, 0.2, 12);
  EXPECT_EQ(a.val, b.val);
  EXPECT_EQ(a.train, b.train);
  EXPECT_NE(a.val, c.val);
  expect_partition(c, strata.size());
}

TEST(StratifiedHoldout, StratumSplitIndependentOfOtherStrata) {
  // Adding slides of another stratum at the end leaves the existing stratum's split unchanged.
  std::vector<int> strata(40, 0);
  const Split before = stratified_holdout(strata, 0.3, 5);
  strata.resize(60, 1);
  const Split after = stratified_holdout(strata, 0.3, 5);
  std::vector<int64_t> val0;
  for (int64_t i : after.val) {
    if (i < 40) val0.push_back(i);
  }
  EXPECT_EQ(val0, before.val);
}

TEST(StratifiedHoldout, RejectsBadFraction) {
  const std::vector<int> strata = {0, 0, 1, 1};
  for (double f : {-0.1, 1.0, 1.5, std::nan("")}) {
    expect_error([&] { stratified_holdout(strata, f, 1); }, {"--val-fraction", "must be in [0, 1)"});
  }
  expect_error([&] { stratified_holdout({}, 0.2, 1); }, {"no slides"});
}

TEST(StratifiedKFold, FoldsPartitionAndBalanceStrata) {
  const std::vector<int> strata = example_strata();
  const int k = 4;
  std::vector<int> times_val(strata.size(), 0);
  std::vector<std::map<int, int64_t>> per_fold;
  std::vector<size_t> fold_sizes;
  for (int fold = 0; fold < k; ++fold) {
    const Split s = stratified_kfold(strata, k, fold, 9);
    expect_partition(s, strata.size());
    EXPECT_TRUE(s.test.empty());
    for (int64_t i : s.val) ++times_val[static_cast<size_t>(i)];
    per_fold.push_back(count_by_stratum(s.val, strata));
    fold_sizes.push_back(s.val.size());
  }
  EXPECT_EQ(times_val, std::vector<int>(strata.size(), 1)) << "every slide is validated on exactly once";
  for (int stratum : {0, 1, 3, 5}) {
    int64_t lo = 1 << 30, hi = 0;
    for (auto& counts : per_fold) {
      lo = std::min(lo, counts[stratum]);
      hi = std::max(hi, counts[stratum]);
    }
    EXPECT_LE(hi - lo, 1) << "stratum " << stratum;
  }
  EXPECT_LE(
      *std::max_element(fold_sizes.begin(), fold_sizes.end()) - *std::min_element(fold_sizes.begin(), fold_sizes.end()),
      1u);
}

TEST(StratifiedKFold, StratumSmallerThanKSpreadsOverDistinctFolds) {
  // Documented: allowed, its members land in different folds and some folds have none of it.
  const std::vector<int> strata = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1};
  std::vector<int> folds_with_1;
  for (int fold = 0; fold < 5; ++fold) {
    if (count_by_stratum(stratified_kfold(strata, 5, fold, 2).val, strata)[1] > 0) folds_with_1.push_back(fold);
    EXPECT_LE(count_by_stratum(stratified_kfold(strata, 5, fold, 2).val, strata)[1], 1);
  }
  EXPECT_EQ(folds_with_1.size(), 2u);
}

TEST(StratifiedKFold, DeterministicFromSeed) {
  std::vector<int> strata(100);
  for (size_t i = 0; i < strata.size(); ++i) strata[i] = static_cast<int>(i % 2);
  EXPECT_EQ(stratified_kfold(strata, 5, 2, 1).val, stratified_kfold(strata, 5, 2, 1).val);
  EXPECT_NE(stratified_kfold(strata, 5, 2, 1).val, stratified_kfold(strata, 5, 2, 2).val);
}

TEST(StratifiedKFold, RejectsBadArguments) {
  const std::vector<int> strata = {0, 0, 1, 1, 0};
  expect_error([&] { stratified_kfold(strata, 1, 0, 1); }, {"--folds", "must be >= 2, got 1"});
  expect_error([&] { stratified_kfold(strata, 6, 0, 1); }, {"--folds", "6 folds of 5 slides"});
  expect_error([&] { stratified_kfold(strata, 5, 5, 1); }, {"--fold'", "must be in [0, 5)", "got 5"});
  expect_error([&] { stratified_kfold(strata, 5, -1, 1); }, {"--fold'", "got -1"});
}

class ClamCsv : public ::testing::Test {
 protected:
  void TearDown() override {
    for (const std::string& p : written_) std::remove(p.c_str());
  }
  std::string write(const std::string& content) {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    const std::string path = ::testing::TempDir() + "dsmil_" + info->name() + "_" + std::to_string(::getpid()) + "_" +
                             std::to_string(written_.size()) + ".csv";
    std::ofstream(path, std::ios::binary) << content;
    written_.push_back(path);
    return path;
  }
  const std::vector<std::string> ids_ = {"s0", "s1", "s2", "s3", "s4", "s5", "s6", "s7"};

 private:
  std::vector<std::string> written_;
};

TEST_F(ClamCsv, ReadsPandasOutputWithIndexColumnAndPadding) {
  // As written by CLAM's save_splits (pandas to_csv): unnamed index column, short columns padded.
  const std::string path = write(",train,val,test\n0,s3,s1,s6\n1,s0,NaN,\n2,s5,,\n3,s7,nan,NaN\n");
  const Split s = read_clam_split_csv(path, ids_);
  EXPECT_EQ(s.train, (std::vector<int64_t>{0, 3, 5, 7}));
  EXPECT_EQ(s.val, (std::vector<int64_t>{1}));
  EXPECT_EQ(s.test, (std::vector<int64_t>{6}));
  EXPECT_EQ(s.unassigned, (std::vector<int64_t>{2, 4}));
  expect_partition(s, ids_.size());
}

TEST_F(ClamCsv, ReadsReorderedColumnsQuotesAndCrlf) {
  const std::string path = write("\xEF\xBB\xBFtest,val,train\r\n\"s1\",s2,\"s,0\"\r\ns7,,s4\r\n\r\n");
  std::vector<std::string> ids = ids_;
  ids[0] = "s,0";
  const Split s = read_clam_split_csv(path, ids);
  EXPECT_EQ(s.train, (std::vector<int64_t>{0, 4}));
  EXPECT_EQ(s.val, (std::vector<int64_t>{2}));
  EXPECT_EQ(s.test, (std::vector<int64_t>{1, 7}));
  EXPECT_EQ(s.unassigned, (std::vector<int64_t>{3, 5, 6}));
}

TEST_F(ClamCsv, Errors) {
  std::string p = write(",train,val,test\n0,s0,s1,s2\n1,s9,,\n");
  expect_error([&] { read_clam_split_csv(p, ids_); }, {p, "'s9'", "column 'train' (line 3)", "not a slide"});

  p = write(",train,val,test\n0,s0,s1,s2\n1,s3,s0,\n");
  expect_error([&] { read_clam_split_csv(p, ids_); }, {p, "'s0'", "both column 'train' (line 2) and column 'val'"});

  p = write(",train,val,test\n0,s0,s1,s2\n1,s1,,\n2,,s1,\n");
  expect_error([&] { read_clam_split_csv(p, ids_); }, {p, "'s1'", "both column 'val' (line 2) and column 'train'"});

  p = write("train,val,test\ns0,s1,\ns0,,\n");
  expect_error([&] { read_clam_split_csv(p, ids_); }, {p, "'s0'", "twice in column 'train' (lines 2 and 3)"});

  p = write(",train,val\n0,s0,s1\n");
  expect_error([&] { read_clam_split_csv(p, ids_); }, {p, "'test'", "column missing"});

  p = write("train,val,val,test\ns0,s1,s2,s3\n");
  expect_error([&] { read_clam_split_csv(p, ids_); }, {p, "'val'", "twice in the header"});

  p = write(",train,val,test\n0,s0,s1\n");
  expect_error([&] { read_clam_split_csv(p, ids_); }, {p, "line 2", "3 fields, but the header has 4"});

  p = write("slide_id,train,val,test\ns0,True,False,False\n");
  expect_error([&] { read_clam_split_csv(p, ids_); }, {p, "'True'", "splits_k_bool.csv"});

  p = write("");
  expect_error([&] { read_clam_split_csv(p, ids_); }, {p, "empty CSV file"});

  p = write("train,val,test\n\"s0,s1,\n");
  expect_error([&] { read_clam_split_csv(p, ids_); }, {p, "line 2", "unterminated quoted field"});

  const std::string missing = ::testing::TempDir() + "dsmil_no_such_split.csv";
  expect_error([&] { read_clam_split_csv(missing, ids_); }, {missing, "cannot open"});

  p = write("train,val,test\ns0,s1,s2\n");
  expect_error([&] { read_clam_split_csv(p, {"a", "b", "a"}); }, {"'a'", "twice in the slide list"});
}

}  // namespace
}  // namespace mil
