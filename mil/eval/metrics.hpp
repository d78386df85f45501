#pragma once
// Bag-level evaluation metrics, mirroring what the DSMIL reference (train_tcga.py) gets from sklearn:
// per-class ROC AUC, Youden-optimal thresholds, exact-match accuracy. Pure std; no torch.
//
// Inputs are validated: empty input, size mismatches, labels outside {0, 1} and non-finite scores
// throw mil::Error (sklearn refuses NaN/inf scores too; a NaN probability means training diverged).
#include <limits>
#include <utility>
#include <vector>

namespace mil {

struct RocCurve {
  std::vector<double> fpr, tpr, thresholds;
};

// As sklearn.metrics.roc_curve(labels, scores, drop_intermediate=True) in sklearn >= 1.3: one point per
// distinct score in descending order, preceded by the point (0, 0) at threshold +inf. Like sklearn, an
// intermediate point is dropped when both its fp and tp counts are equal steps from its neighbours
// (zero second differences); the first and last score points are always kept. With one class only,
// the undefined rate (fpr without negatives, tpr without positives) is NaN, as in sklearn.
RocCurve roc_curve(const std::vector<double>& scores, const std::vector<int>& labels);

// Area under the ROC curve as the Mann-Whitney probability P(score_pos > score_neg), ties counted 1/2.
// NaN when the labels hold one class only (the reference sets 1 there; we don't).
double roc_auc(const std::vector<double>& scores, const std::vector<int>& labels);

// Threshold maximising Youden's J = tpr - fpr over the ROC points; among ties the first (highest
// threshold), like the reference's np.argmin(fpr - tpr). J is compared in exact integer arithmetic so
// mathematically equal points tie. The +inf point comes back as std::nextafter(max score, +inf), which
// predicts the same (nothing) but can be stored in JSON. Prediction rule everywhere: score >= threshold.
// With one class only the undefined rate counts as 0: all-negative labels give the "+inf" threshold,
// all-positive labels the lowest score (the reference, via argmin over NaN, gives "+inf" for both).
double youden_threshold(const std::vector<double>& scores, const std::vector<int>& labels);

struct EvalMetrics {
  std::vector<double> auc;         // per class; NaN where undefined
  std::vector<double> thresholds;  // per class
  double accuracy = 0;             // exact-match (subset) accuracy: a bag counts only if all C bits match
  double hamming_loss = 0;         // fraction of wrong (bag, class) bits
  // C == 1 only: (TPR + TNR) / 2, or like sklearn the one recall that exists when a class is absent.
  double balanced_accuracy = std::numeric_limits<double>::quiet_NaN();

  double mean_auc() const;  // mean over defined AUCs, NaN if none
  double score() const;     // model selection: (mean_auc + accuracy) / 2; accuracy when mean_auc is NaN
};

// probs[n][c] in [0, 1], targets[n][c] in {0, 1} (an all-zero row is the negative class). With empty
// `thresholds` they are fitted per class with youden_threshold on this same set; otherwise the given
// ones are applied.
EvalMetrics evaluate(const std::vector<std::vector<double>>& probs, const std::vector<std::vector<int>>& targets,
                     std::vector<double> thresholds = {});

// preds[n][c] = probs[n][c] >= thresholds[c].
std::vector<std::vector<int>> predict_labels(const std::vector<std::vector<double>>& probs,
                                             const std::vector<double>& thresholds);

// Per (bag, class) majority over several models' binarised predictions votes[m][n][c]: 1 only with a
// strict majority of ones, so ties go to 0.
std::vector<std::vector<int>> majority_vote(const std::vector<std::vector<std::vector<int>>>& votes);

// Mean and sample standard deviation (n - 1; 0 for a single value) of the non-NaN values, for k-fold
// summaries. {NaN, NaN} when there are none (e.g. an AUC undefined in every fold).
std::pair<double, double> mean_std(const std::vector<double>& values);

}  // namespace mil
