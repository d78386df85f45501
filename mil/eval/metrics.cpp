#include "mil/eval/metrics.hpp"

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <numeric>
#include <string>

#include "mil/util/error.hpp"

namespace mil {
namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
constexpr double kInf = std::numeric_limits<double>::infinity();

void check_binary_inputs(const std::vector<double>& scores, const std::vector<int>& labels, const std::string& what) {
  if (scores.empty()) throw Error(what + ": no scores");
  if (scores.size() != labels.size()) {
    throw Error(what + ": " + std::to_string(scores.size()) + " scores but " + std::to_string(labels.size()) +
                " labels");
  }
  for (size_t i = 0; i < scores.size(); ++i) {
    if (labels[i] != 0 && labels[i] != 1) {
      throw Error(what + ": label " + std::to_string(i) + " is " + std::to_string(labels[i]) + ", expected 0 or 1");
    }
    if (!std::isfinite(scores[i])) throw Error(what + ": score " + std::to_string(i) + " is not finite");
  }
}

// Cumulative false/true positive counts at each distinct score, highest first. Counts stay integers so
// the AUC and Youden comparisons are exact.
struct CountCurve {
  std::vector<int64_t> fps, tps;
  std::vector<double> thresholds;
};

// sklearn's _binary_clf_curve: one point per distinct score, no (0, 0) point, nothing dropped.
CountCurve count_curve(const std::vector<double>& scores, const std::vector<int>& labels) {
  std::vector<size_t> order(scores.size());
  std::iota(order.begin(), order.end(), size_t{0});
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return scores[a] > scores[b]; });
  CountCurve curve;
  int64_t fp = 0;
  int64_t tp = 0;
  for (size_t k = 0; k < order.size(); ++k) {
    const size_t i = order[k];
    (labels[i] == 1 ? tp : fp)++;
    if (k + 1 == order.size() || scores[order[k + 1]] != scores[i]) {
      curve.fps.push_back(fp);
      curve.tps.push_back(tp);
      curve.thresholds.push_back(scores[i]);
    }
  }
  return curve;
}

// The points roc_curve reports: sklearn's drop_intermediate rule, then (0, 0) at +inf in front.
CountCurve roc_counts(const std::vector<double>& scores, const std::vector<int>& labels) {
  const CountCurve all = count_curve(scores, labels);
  CountCurve out{{0}, {0}, {kInf}};
  const size_t m = all.fps.size();
  for (size_t i = 0; i < m; ++i) {
    const bool interior = i > 0 && i + 1 < m;
    if (interior && all.fps[i + 1] - 2 * all.fps[i] + all.fps[i - 1] == 0 &&
        all.tps[i + 1] - 2 * all.tps[i] + all.tps[i - 1] == 0) {
      continue;
    }
    out.fps.push_back(all.fps[i]);
    out.tps.push_back(all.tps[i]);
    out.thresholds.push_back(all.thresholds[i]);
  }
  return out;
}

}  // namespace

RocCurve roc_curve(const std::vector<double>& scores, const std::vector<int>& labels) {
  check_binary_inputs(scores, labels, "roc_curve");
  const CountCurve counts = roc_counts(scores, labels);
  const auto negatives = static_cast<double>(counts.fps.back());
  const auto positives = static_cast<double>(counts.tps.back());
  RocCurve roc;
  roc.thresholds = counts.thresholds;
  for (size_t i = 0; i < counts.fps.size(); ++i) {
    roc.fpr.push_back(negatives > 0 ? static_cast<double>(counts.fps[i]) / negatives : kNaN);
    roc.tpr.push_back(positives > 0 ? static_cast<double>(counts.tps[i]) / positives : kNaN);
  }
  return roc;
}

double roc_auc(const std::vector<double>& scores, const std::vector<int>& labels) {
  check_binary_inputs(scores, labels, "roc_auc");
  const CountCurve c = count_curve(scores, labels);
  const int64_t negatives = c.fps.back();
  const int64_t positives = c.tps.back();
  if (negatives == 0 || positives == 0) return kNaN;
  // Twice the trapezoid area in count units: a tied group's diagonal segment is what credits ties 1/2.
  int64_t area2 = 0;
  int64_t prev_fp = 0;
  int64_t prev_tp = 0;
  for (size_t i = 0; i < c.fps.size(); ++i) {
    area2 += (c.fps[i] - prev_fp) * (c.tps[i] + prev_tp);
    prev_fp = c.fps[i];
    prev_tp = c.tps[i];
  }
  return static_cast<double>(area2) / (2.0 * static_cast<double>(negatives) * static_cast<double>(positives));
}

double youden_threshold(const std::vector<double>& scores, const std::vector<int>& labels) {
  check_binary_inputs(scores, labels, "youden_threshold");
  const CountCurve c = roc_counts(scores, labels);
  // J * P * N = tps * N - fps * P. A missing class gets denominator 1, so its (undefined) rate counts as 0.
  const int64_t negatives = std::max<int64_t>(c.fps.back(), 1);
  const int64_t positives = std::max<int64_t>(c.tps.back(), 1);
  size_t best = 0;
  int64_t best_j = 0;  // J of the (0, 0) point
  for (size_t i = 1; i < c.fps.size(); ++i) {
    const int64_t j = c.tps[i] * negatives - c.fps[i] * positives;
    if (j > best_j) {
      best_j = j;
      best = i;
    }
  }
  // thresholds[1] is the highest score; the point after +inf is never dropped.
  return best == 0 ? std::nextafter(c.thresholds[1], kInf) : c.thresholds[best];
}

double EvalMetrics::mean_auc() const {
  double sum = 0;
  int defined = 0;
  for (double a : auc) {
    if (std::isnan(a)) continue;
    sum += a;
    ++defined;
  }
  return defined > 0 ? sum / defined : kNaN;
}

double EvalMetrics::score() const {
  const double m = mean_auc();
  return std::isnan(m) ? accuracy : (m + accuracy) / 2;
}

EvalMetrics evaluate(const std::vector<std::vector<double>>& probs, const std::vector<std::vector<int>>& targets,
                     std::vector<double> thresholds) {
  if (probs.empty()) throw Error("evaluate: no bags");
  if (probs.size() != targets.size()) {
    throw Error("evaluate: " + std::to_string(probs.size()) + " predictions but " + std::to_string(targets.size()) +
                " targets");
  }
  const size_t num_classes = probs[0].size();
  if (num_classes == 0) throw Error("evaluate: no classes");
  for (size_t n = 0; n < probs.size(); ++n) {
    if (probs[n].size() != num_classes || targets[n].size() != num_classes) {
      throw Error("evaluate: bag " + std::to_string(n) + " has " + std::to_string(probs[n].size()) +
                  " predictions and " + std::to_string(targets[n].size()) + " targets, expected " +
                  std::to_string(num_classes));
    }
  }
  if (!thresholds.empty() && thresholds.size() != num_classes) {
    throw Error("evaluate: " + std::to_string(thresholds.size()) + " thresholds for " + std::to_string(num_classes) +
                " classes");
  }
  const bool fit = thresholds.empty();

  EvalMetrics m;
  for (size_t c = 0; c < num_classes; ++c) {
    std::vector<double> scores;
    std::vector<int> labels;
    for (size_t n = 0; n < probs.size(); ++n) {
      scores.push_back(probs[n][c]);
      labels.push_back(targets[n][c]);
    }
    m.auc.push_back(roc_auc(scores, labels));
    if (fit) thresholds.push_back(youden_threshold(scores, labels));
  }
  m.thresholds = thresholds;

  const std::vector<std::vector<int>> preds = predict_labels(probs, thresholds);
  int64_t exact = 0;
  int64_t wrong_bits = 0;
  int64_t tp = 0, fn = 0, tn = 0, fp = 0;  // class 0, used for C == 1
  for (size_t n = 0; n < preds.size(); ++n) {
    int64_t wrong = 0;
    for (size_t c = 0; c < num_classes; ++c) wrong += preds[n][c] != targets[n][c];
    exact += wrong == 0;
    wrong_bits += wrong;
    if (targets[n][0] == 1) {
      (preds[n][0] == 1 ? tp : fn)++;
    } else {
      (preds[n][0] == 0 ? tn : fp)++;
    }
  }
  const auto bags = static_cast<double>(preds.size());
  m.accuracy = static_cast<double>(exact) / bags;
  m.hamming_loss = static_cast<double>(wrong_bits) / (bags * static_cast<double>(num_classes));
  if (num_classes == 1) {
    // Like sklearn's balanced_accuracy_score: the mean recall over the classes present in the targets.
    double recall_sum = 0;
    int present = 0;
    if (tp + fn > 0) {
      recall_sum += static_cast<double>(tp) / static_cast<double>(tp + fn);
      ++present;
    }
    if (tn + fp > 0) {
      recall_sum += static_cast<double>(tn) / static_cast<double>(tn + fp);
      ++present;
    }
    m.balanced_accuracy = recall_sum / present;
  }
  return m;
}

std::vector<std::vector<int>> predict_labels(const std::vector<std::vector<double>>& probs,
                                             const std::vector<double>& thresholds) {
  if (thresholds.empty()) throw Error("predict_labels: no thresholds");
  std::vector<std::vector<int>> preds(probs.size(), std::vector<int>(thresholds.size()));
  for (size_t n = 0; n < probs.size(); ++n) {
    if (probs[n].size() != thresholds.size()) {
      throw Error("predict_labels: bag " + std::to_string(n) + " has " + std::to_string(probs[n].size()) +
                  " scores for " + std::to_string(thresholds.size()) + " thresholds");
    }
    for (size_t c = 0; c < thresholds.size(); ++c) preds[n][c] = probs[n][c] >= thresholds[c] ? 1 : 0;
  }
  return preds;
}

std::vector<std::vector<int>> majority_vote(const std::vector<std::vector<std::vector<int>>>& votes) {
  if (votes.empty()) throw Error("majority_vote: no models");
  const std::vector<std::vector<int>>& first = votes[0];
  std::vector<std::vector<int>> ones(first.size());
  for (size_t n = 0; n < first.size(); ++n) ones[n].assign(first[n].size(), 0);
  for (size_t m = 0; m < votes.size(); ++m) {
    if (votes[m].size() != first.size()) {
      throw Error("majority_vote: model " + std::to_string(m) + " has " + std::to_string(votes[m].size()) +
                  " bags, model 0 has " + std::to_string(first.size()));
    }
    for (size_t n = 0; n < first.size(); ++n) {
      if (votes[m][n].size() != first[n].size()) {
        throw Error("majority_vote: model " + std::to_string(m) + " has " + std::to_string(votes[m][n].size()) +
                    " classes for bag " + std::to_string(n) + ", model 0 has " + std::to_string(first[n].size()));
      }
      for (size_t c = 0; c < first[n].size(); ++c) ones[n][c] += votes[m][n][c] != 0;
    }
  }
  const size_t models = votes.size();
  for (auto& row : ones) {
    for (int& count : row) count = 2 * static_cast<size_t>(count) > models ? 1 : 0;
  }
  return ones;
}

std::pair<double, double> mean_std(const std::vector<double>& values) {
  double sum = 0;
  size_t n = 0;
  for (double v : values) {
    if (std::isnan(v)) continue;
    sum += v;
    ++n;
  }
  if (n == 0) return {kNaN, kNaN};
  const double mean = sum / static_cast<double>(n);
  if (n == 1) return {mean, 0.0};
  double squares = 0;
  for (double v : values) {
    if (!std::isnan(v)) squares += (v - mean) * (v - mean);
  }
  return {mean, std::sqrt(squares / static_cast<double>(n - 1))};
}

}  // namespace mil
