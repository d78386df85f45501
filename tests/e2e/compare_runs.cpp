// Compares two dsmil_train runs: the weights of two model.pth files within a tolerance, and two
// metrics.json files: epoch numbers, validation AUC and accuracy and the best epoch exactly, every other
// number (losses, learning rates, test metrics) within the tolerance, timings not at all. Optionally two
// predictions.csv files: the same rows, names, labels and predicted classes, probabilities within the
// tolerance plus the file's printed precision (two runs within 1e-7 of each other may print 1e-6 apart).
// Exits 0 when the runs agree, else 1 after listing every difference.
//   usage: dsmil_compare_runs A/model.pth B/model.pth A/metrics.json B/metrics.json TOLERANCE
//                             [A/predictions.csv B/predictions.csv]
#include <cmath>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <vector>

#include "mil/io/csv.hpp"
#include "mil/io/files.hpp"
#include "mil/model/state_dict.hpp"

namespace {

using nlohmann::json;

int differences = 0;

void differ(const std::string& where, const std::string& what) {
  std::fprintf(stderr, "differ: %s: %s\n", where.c_str(), what.c_str());
  ++differences;
}

void compare_weights(const std::string& a_path, const std::string& b_path, double tol) {
  const mil::StateDict a = mil::read_state_dict(a_path);
  const mil::StateDict b = mil::read_state_dict(b_path);
  if (a.size() != b.size()) return differ("weights", std::to_string(a.size()) + " vs " + std::to_string(b.size()));
  double worst = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    const auto& [key, ta] = a[i];
    const auto& tb = b[i].second;
    if (key != b[i].first) return differ("weights", "key " + key + " vs " + b[i].first);
    if (ta.sizes() != tb.sizes()) return differ(key, "shapes differ");
    const double d = (ta.to(torch::kDouble) - tb.to(torch::kDouble)).abs().max().item<double>();
    if (!(d <= tol)) differ(key, "max |a - b| = " + std::to_string(d));
    worst = std::max(worst, d);
  }
  std::printf("weights: %zu tensors, max |a - b| = %.3g\n", a.size(), worst);
}

// Keys whose numbers must match exactly, and keys left out (timings).
const std::set<std::string> kExact = {"fold",      "epoch", "val_auc",  "val_accuracy", "best_epoch",
                                      "best_fold", "auc",   "accuracy", "mean_auc"};
const std::set<std::string> kIgnored = {"seconds", "instances_per_second"};

void compare_json(const json& a, const json& b, const std::string& where, bool exact, double tol) {
  if (a.is_number() && b.is_number()) {
    const double x = a.get<double>(), y = b.get<double>();
    if (exact ? x != y : !(std::abs(x - y) <= tol)) differ(where, a.dump() + " vs " + b.dump());
  } else if (a.is_object() && b.is_object()) {
    for (const auto& [key, value] : a.items()) {
      if (kIgnored.count(key)) continue;
      if (!b.contains(key)) {
        differ(where + "." + key, "missing in the second run");
        continue;
      }
      compare_json(value, b[key], where + "." + key, exact || kExact.count(key) > 0, tol);
    }
    for (const auto& [key, value] : b.items()) {
      if (!a.contains(key)) differ(where + "." + key, "missing in the first run");
    }
  } else if (a.is_array() && b.is_array()) {
    if (a.size() != b.size()) return differ(where, std::to_string(a.size()) + " vs " + std::to_string(b.size()));
    for (size_t i = 0; i < a.size(); ++i) compare_json(a[i], b[i], where + "[" + std::to_string(i) + "]", exact, tol);
  } else if (a != b) {
    differ(where, a.dump() + " vs " + b.dump());
  }
}

void compare_predictions(const std::string& a_path, const std::string& b_path, double tol) {
  const mil::io::CsvTable a = mil::io::read_csv(a_path), b = mil::io::read_csv(b_path);
  if (a.header != b.header) return differ("predictions", "the two files have different columns");
  if (a.rows.size() != b.rows.size()) {
    return differ("predictions", std::to_string(a.rows.size()) + " vs " + std::to_string(b.rows.size()) + " rows");
  }
  double worst = 0;
  for (size_t i = 0; i < a.rows.size(); ++i) {
    const std::vector<std::string>& ra = a.rows[i];
    const std::vector<std::string>& rb = b.rows[i];
    const std::string where = "predictions row " + std::to_string(i + 1);
    for (size_t j = 0; j < a.header.size(); ++j) {
      if (a.header[j].rfind("p_", 0) != 0) {  // names, labels, predicted classes: exactly
        if (ra[j] != rb[j]) differ(where + ", " + a.header[j], ra[j] + " vs " + rb[j]);
        continue;
      }
      const double d = std::abs(std::stod(ra[j]) - std::stod(rb[j]));
      if (!(d <= tol + 1e-6)) differ(where + ", " + a.header[j], ra[j] + " vs " + rb[j]);
      worst = std::max(worst, d);
    }
  }
  std::printf("predictions: %zu rows, max |a - b| = %.3g\n", a.rows.size(), worst);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 6 && argc != 8) {
    std::fprintf(stderr,
                 "usage: %s A/model.pth B/model.pth A/metrics.json B/metrics.json TOLERANCE "
                 "[A/predictions.csv B/predictions.csv]\n",
                 argv[0]);
    return 2;
  }
  try {
    const double tol = std::stod(argv[5]);
    compare_weights(argv[1], argv[2], tol);
    const json a = json::parse(mil::io::read_file(argv[3]));
    const json b = json::parse(mil::io::read_file(argv[4]));
    compare_json(a, b, "metrics", false, tol);
    std::printf("metrics: %zu epoch records compared\n", a.value("epochs", json::array()).size());
    if (argc == 8) compare_predictions(argv[6], argv[7], tol);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 2;
  }
  if (differences > 0) std::fprintf(stderr, "%d difference(s)\n", differences);
  return differences > 0 ? 1 : 0;
}
