// Evaluation metrics against hand-worked cases and values computed with scikit-learn 1.9.1
// (roc_curve, roc_auc_score, accuracy_score, hamming_loss, balanced_accuracy_score), which is what the
// DSMIL reference uses.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <random>
#include <vector>

#include "mil/eval/metrics.hpp"
#include "mil/util/error.hpp"

namespace mil {
namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();

// Element-wise equality to 1e-12, NaN matching NaN and inf matching inf.
::testing::AssertionResult same_values(const std::vector<double>& actual, const std::vector<double>& expected) {
  if (actual.size() != expected.size()) {
    return ::testing::AssertionFailure() << "size " << actual.size() << " != expected " << expected.size();
  }
  for (size_t i = 0; i < actual.size(); ++i) {
    const double a = actual[i];
    const double e = expected[i];
    const bool ok = std::isnan(e) ? std::isnan(a) : (std::isinf(e) ? a == e : std::abs(a - e) <= 1e-12);
    if (!ok) return ::testing::AssertionFailure() << "element " << i << ": " << a << " vs expected " << e;
  }
  return ::testing::AssertionSuccess();
}

TEST(RocAuc, MatchesHandCountedPairs) {
  // Positives 0.35 and 0.8 against negatives 0.1 and 0.4: 3 of 4 pairs ordered.
  EXPECT_DOUBLE_EQ(roc_auc({0.1, 0.4, 0.35, 0.8}, {0, 0, 1, 1}), 0.75);
}

TEST(RocAuc, CountsTiesAcrossClassesAsHalf) {
  // Positive 0.5 beats negative 0.2 and ties negative 0.5: (1 + 0.5 + 2) / 4 (sklearn: 0.875).
  EXPECT_DOUBLE_EQ(roc_auc({0.2, 0.5, 0.5, 0.9}, {0, 0, 1, 1}), 0.875);
  // Everything tied: every pair is half credit (sklearn: 0.5).
  EXPECT_DOUBLE_EQ(roc_auc({0.5, 0.5, 0.5}, {0, 1, 1}), 0.5);
}

TEST(RocAuc, OneClassIsNaN) {
  EXPECT_TRUE(std::isnan(roc_auc({0.1, 0.5, 0.3}, {0, 0, 0})));
  EXPECT_TRUE(std::isnan(roc_auc({0.1, 0.5}, {1, 1})));
}

TEST(RocAuc, EqualsPairwiseDefinitionAndCurveArea) {
  std::mt19937 rng(7);
  std::uniform_int_distribution<int> coarse(0, 9);  // few distinct values, so many ties
  std::bernoulli_distribution coin(0.4);
  for (int trial = 0; trial < 20; ++trial) {
    std::vector<double> scores;
    std::vector<int> labels = {0, 1};  // both classes present
    for (int i = 0; i < 40; ++i) labels.push_back(coin(rng) ? 1 : 0);
    for (size_t i = 0; i < labels.size(); ++i) scores.push_back(coarse(rng) / 10.0);

    double credit = 0;
    double pairs = 0;
    for (size_t p = 0; p < labels.size(); ++p) {
      for (size_t q = 0; q < labels.size(); ++q) {
        if (labels[p] != 1 || labels[q] != 0) continue;
        credit += scores[p] > scores[q] ? 1.0 : (scores[p] == scores[q] ? 0.5 : 0.0);
        pairs += 1;
      }
    }
    const double auc = roc_auc(scores, labels);
    EXPECT_NEAR(auc, credit / pairs, 1e-12);

    // Dropping collinear points must not change the trapezoid area.
    const RocCurve roc = roc_curve(scores, labels);
    double area = 0;
    for (size_t i = 1; i < roc.fpr.size(); ++i)
      area += (roc.fpr[i] - roc.fpr[i - 1]) * (roc.tpr[i] + roc.tpr[i - 1]) / 2;
    EXPECT_NEAR(area, auc, 1e-12);
  }
}

TEST(RocCurve, DropsEquallySpacedIntermediatePoints) {
  // Sorted: 0.9+ 0.8+ 0.7- 0.6- 0.5- 0.4+. The points at 0.7 and 0.6 are equal steps along fpr and
  // are dropped; the rest are kept. Values from sklearn.
  const RocCurve roc = roc_curve({0.9, 0.8, 0.7, 0.6, 0.5, 0.4}, {1, 1, 0, 0, 0, 1});
  EXPECT_TRUE(same_values(roc.fpr, {0, 0, 0, 1, 1}));
  EXPECT_TRUE(same_values(roc.tpr, {0, 1.0 / 3, 2.0 / 3, 2.0 / 3, 1}));
  EXPECT_TRUE(same_values(roc.thresholds, {kInf, 0.9, 0.8, 0.5, 0.4}));
}

TEST(RocCurve, KeepsCollinearPointsWithUnequalSteps) {
  // Sorted: 0.9+ {0.7- 0.7-} 0.6- 0.5+. The point at 0.7 lies on a horizontal line between 0.9 and 0.6,
  // but its fp step (2) differs from the next (1), so sklearn keeps it.
  const RocCurve roc = roc_curve({0.9, 0.7, 0.7, 0.6, 0.5}, {1, 0, 0, 0, 1});
  EXPECT_TRUE(same_values(roc.fpr, {0, 0, 2.0 / 3, 1, 1}));
  EXPECT_TRUE(same_values(roc.tpr, {0, 0.5, 0.5, 0.5, 1}));
  EXPECT_TRUE(same_values(roc.thresholds, {kInf, 0.9, 0.7, 0.6, 0.5}));
}

TEST(RocCurve, ShortCurvesKeepEveryPoint) {
  // Values from sklearn.
  const RocCurve roc = roc_curve({0.3, 0.6}, {0, 1});
  EXPECT_TRUE(same_values(roc.fpr, {0, 0, 1}));
  EXPECT_TRUE(same_values(roc.tpr, {0, 1, 1}));
  EXPECT_TRUE(same_values(roc.thresholds, {kInf, 0.6, 0.3}));
}

TEST(RocCurve, OneClassGivesNaNRate) {
  // Values from sklearn: the undefined rate is NaN, and the middle point (equal steps) is dropped.
  const RocCurve negatives = roc_curve({0.2, 0.7, 0.4}, {0, 0, 0});
  EXPECT_TRUE(same_values(negatives.fpr, {0, 1.0 / 3, 1}));
  EXPECT_TRUE(same_values(negatives.tpr, {NAN, NAN, NAN}));
  EXPECT_TRUE(same_values(negatives.thresholds, {kInf, 0.7, 0.2}));
  const RocCurve positives = roc_curve({0.2, 0.7, 0.4}, {1, 1, 1});
  EXPECT_TRUE(same_values(positives.fpr, {NAN, NAN, NAN}));
  EXPECT_TRUE(same_values(positives.tpr, {0, 1.0 / 3, 1}));
}

TEST(YoudenThreshold, PicksMaximumJ) {
  // J over the points of DropsEquallySpacedIntermediatePoints: 0, 1/3, 2/3, -1/3, 0 (sklearn argmin: 0.8).
  EXPECT_EQ(youden_threshold({0.9, 0.8, 0.7, 0.6, 0.5, 0.4}, {1, 1, 0, 0, 0, 1}), 0.8);
}

TEST(YoudenThreshold, TiesGoToTheHighestThreshold) {
  // J = 1/2 at both 0.9 (fpr 0, tpr 1/2) and 0.7 (fpr 1/2, tpr 1); the reference's argmin picks 0.9.
  EXPECT_EQ(youden_threshold({0.9, 0.8, 0.7, 0.6}, {1, 0, 1, 0}), 0.9);
}

TEST(YoudenThreshold, InfinitePointBecomesJustAboveTheMaximum) {
  // Positive below negative: J = 0 at +inf ties J = 0 at 0.2 and the first wins (sklearn argmin: inf).
  const double t = youden_threshold({0.9, 0.2}, {0, 1});
  EXPECT_EQ(t, std::nextafter(0.9, kInf));
  EXPECT_TRUE(std::isfinite(t));
  EXPECT_EQ(predict_labels({{0.9}, {0.2}}, {t}), (std::vector<std::vector<int>>{{0}, {0}}));
  // All scores tied: the only points are +inf and 0.5, both J = 0 (sklearn argmin: inf).
  EXPECT_EQ(youden_threshold({0.5, 0.5}, {0, 1}), std::nextafter(0.5, kInf));
}

TEST(YoudenThreshold, OneClassTreatsTheUndefinedRateAsZero) {
  // No positives: J = -fpr, best at +inf, so everything is predicted negative (as the reference does).
  EXPECT_EQ(youden_threshold({0.2, 0.7, 0.4}, {0, 0, 0}), std::nextafter(0.7, kInf));
  // No negatives: J = tpr, best at the lowest score, so everything is predicted positive.
  EXPECT_EQ(youden_threshold({0.2, 0.7, 0.4}, {1, 1, 1}), 0.2);
}

// Two classes; the third bag is the negative class (all zero).
const std::vector<std::vector<double>> kProbs = {{0.8, 0.1}, {0.3, 0.7}, {0.2, 0.1}, {0.6, 0.6}, {0.4, 0.2}};
const std::vector<std::vector<int>> kTargets = {{1, 0}, {0, 1}, {0, 0}, {1, 0}, {0, 1}};

TEST(Evaluate, ExactMatchAccuracyAndHammingLossWithGivenThresholds) {
  // Predictions at 0.5: {1,0} {0,1} {0,0} {1,1} {0,0}; bags 4 and 5 have one wrong bit each.
  const EvalMetrics m = evaluate(kProbs, kTargets, {0.5, 0.5});
  EXPECT_TRUE(same_values(m.thresholds, {0.5, 0.5}));
  EXPECT_DOUBLE_EQ(m.accuracy, 0.6);      // sklearn accuracy_score (subset accuracy)
  EXPECT_DOUBLE_EQ(m.hamming_loss, 0.2);  // sklearn hamming_loss
  // Class 0 separates perfectly; class 1: positive 0.2 loses to negative 0.6 -> 5/6.
  EXPECT_TRUE(same_values(m.auc, {1.0, 5.0 / 6}));
  EXPECT_DOUBLE_EQ(m.mean_auc(), 11.0 / 12);
  EXPECT_DOUBLE_EQ(m.score(), (11.0 / 12 + 0.6) / 2);
  EXPECT_TRUE(std::isnan(m.balanced_accuracy));  // binary only
}

TEST(Evaluate, FitsYoudenThresholdsWhenNoneGiven) {
  // The reference pipeline in sklearn (argmin(fpr - tpr) per class) gives thresholds 0.6 and 0.2,
  // subset accuracy 0.8 and hamming loss 0.1.
  const EvalMetrics m = evaluate(kProbs, kTargets);
  EXPECT_TRUE(same_values(m.thresholds, {0.6, 0.2}));
  EXPECT_DOUBLE_EQ(m.accuracy, 0.8);
  EXPECT_DOUBLE_EQ(m.hamming_loss, 0.1);
}

TEST(Evaluate, UndefinedAucIsLeftOutOfTheMean) {
  // Class 1 has no positive bag.
  const EvalMetrics m = evaluate({{0.9, 0.3}, {0.2, 0.1}, {0.6, 0.4}}, {{1, 0}, {0, 0}, {1, 0}}, {0.5, 0.5});
  EXPECT_DOUBLE_EQ(m.auc[0], 1.0);
  EXPECT_TRUE(std::isnan(m.auc[1]));
  EXPECT_DOUBLE_EQ(m.mean_auc(), 1.0);
  EXPECT_DOUBLE_EQ(m.accuracy, 1.0);
  EXPECT_DOUBLE_EQ(m.score(), 1.0);
}

TEST(Evaluate, ScoreFallsBackToAccuracyWithoutAnyAuc) {
  const EvalMetrics m = evaluate({{0.9}, {0.2}, {0.6}}, {{0}, {0}, {0}}, {0.5});
  EXPECT_TRUE(std::isnan(m.mean_auc()));
  EXPECT_DOUBLE_EQ(m.accuracy, 1.0 / 3);
  EXPECT_DOUBLE_EQ(m.score(), 1.0 / 3);
}

TEST(Evaluate, BalancedAccuracyOnImbalancedBinary) {
  // 2 positives (one found) and 6 negatives (one false alarm): (1/2 + 5/6) / 2 = 2/3, while plain
  // accuracy is 6/8. Both from sklearn.
  const EvalMetrics m = evaluate({{0.9}, {0.4}, {0.2}, {0.3}, {0.1}, {0.6}, {0.05}, {0.15}},
                                 {{1}, {1}, {0}, {0}, {0}, {0}, {0}, {0}}, {0.5});
  EXPECT_DOUBLE_EQ(m.balanced_accuracy, 2.0 / 3);
  EXPECT_DOUBLE_EQ(m.accuracy, 0.75);
  EXPECT_DOUBLE_EQ(m.hamming_loss, 0.25);
}

TEST(Evaluate, BalancedAccuracyWithOneClassIsItsRecall) {
  // sklearn balanced_accuracy_score([0,0,0,0], [0,1,0,0]) = 0.75: absent classes are left out.
  const EvalMetrics m = evaluate({{0.1}, {0.8}, {0.2}, {0.3}}, {{0}, {0}, {0}, {0}}, {0.5});
  EXPECT_DOUBLE_EQ(m.balanced_accuracy, 0.75);
}

TEST(Evaluate, RefusesBadInput) {
  EXPECT_THROW(evaluate({}, {}), Error);
  EXPECT_THROW(evaluate({{0.5}}, {{1}, {0}}), Error);
  EXPECT_THROW(evaluate({{0.5, 0.1}, {0.5}}, {{1, 0}, {0, 0}}), Error);
  EXPECT_THROW(evaluate({{0.5, 0.1}}, {{1, 0}}, {0.5}), Error);
  EXPECT_THROW(evaluate({{0.5}, {0.2}}, {{2}, {0}}), Error);
  EXPECT_THROW(evaluate({{NAN}, {0.2}}, {{1}, {0}}), Error);
  EXPECT_THROW(roc_auc({}, {}), Error);
  EXPECT_THROW(roc_curve({0.1, 0.2}, {1}), Error);
  EXPECT_THROW(youden_threshold({0.1, kInf}, {1, 0}), Error);
  EXPECT_THROW(predict_labels({{0.1, 0.2}}, {0.5}), Error);
}

TEST(PredictLabels, ScoreAtThresholdIsPositive) {
  EXPECT_EQ(predict_labels({{0.5, 0.49}, {0.49, 0.2}}, {0.5, 0.3}), (std::vector<std::vector<int>>{{1, 1}, {0, 0}}));
}

TEST(MajorityVote, EvenNumberOfVotersTiesGoToZero) {
  // Four models on one bag of four classes: 2, 3, 1 and 4 ones.
  const std::vector<std::vector<std::vector<int>>> votes = {
      {{1, 1, 0, 1}}, {{1, 1, 0, 1}}, {{0, 1, 1, 1}}, {{0, 0, 0, 1}}};
  EXPECT_EQ(majority_vote(votes), (std::vector<std::vector<int>>{{0, 1, 0, 1}}));
}

TEST(MajorityVote, OddNumberOfVoters) {
  const std::vector<std::vector<std::vector<int>>> votes = {{{1}, {0}}, {{1}, {1}}, {{0}, {0}}};
  EXPECT_EQ(majority_vote(votes), (std::vector<std::vector<int>>{{1}, {0}}));
}

TEST(MajorityVote, RefusesMismatchedModels) {
  EXPECT_THROW(majority_vote({}), Error);
  EXPECT_THROW(majority_vote({{{1}}, {{1}, {0}}}), Error);
  EXPECT_THROW(majority_vote({{{1, 0}}, {{1}}}), Error);
}

TEST(MeanStd, SampleStandardDeviationIgnoringNaN) {
  // numpy: mean([1, 2, 3, 4]) = 2.5, std(ddof=1) = sqrt(5/3).
  const auto [mean, sd] = mean_std({1, NAN, 2, 3, 4});
  EXPECT_DOUBLE_EQ(mean, 2.5);
  EXPECT_DOUBLE_EQ(sd, std::sqrt(5.0 / 3));
}

TEST(MeanStd, SingleValueAndNoValues) {
  const auto [mean, sd] = mean_std({0.8, NAN});
  EXPECT_DOUBLE_EQ(mean, 0.8);
  EXPECT_DOUBLE_EQ(sd, 0.0);
  const auto [none_mean, none_sd] = mean_std({NAN});
  EXPECT_TRUE(std::isnan(none_mean));
  EXPECT_TRUE(std::isnan(none_sd));
  EXPECT_TRUE(std::isnan(mean_std({}).first));
}

}  // namespace
}  // namespace mil
