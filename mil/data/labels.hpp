#pragma once
// Slide labels: the label CSV and the mapping from label values to DSMIL's C-bit targets.
//
// DSMIL convention for C classes: a label naming class c sets bit c; the negative label sets no bit (the
// all-zero target). With C = 1 the label is 0/1 (or negative/positive).
//  * Numeric labels, C given: 0..C-1 name classes; any value >= C is the negative label (the reference's
//    rule). C = 1: 0 is negative, 1 positive.
//  * Numeric labels, C inferred: {0, 1} -> C = 1; 0..K-1 with K > 2 -> C = K (no negative class), or
//    C = K-1 when --negative-label names one of them: the classes are the other values in order (labels
//    0-3 with --negative-label 0: classes 1, 2, 3). An inferred C above kMaxInferredClasses is an error
//    naming the value (a stray 999999999 would otherwise make a billion classes); --num-classes lifts it.
//  * String labels: classes are the distinct values in sorted order, less --negative-label if given;
//    exactly two values and no negative label -> C = 1 with the first (sorted) value negative.
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace mil {

struct LabelTable {
  std::string path;
  std::vector<std::string> slide_ids;
  std::vector<std::string> labels;  // raw values, as written
};

// CSV with a header holding `slide_id` and `label` (other columns ignored). Throws mil::Error naming the
// file for a missing column, an empty slide id or label, or a slide listed twice.
LabelTable read_label_csv(const std::string& path);

// The most classes numeric labels may imply without --num-classes.
inline constexpr int64_t kMaxInferredClasses = 1000;

class ClassMap {
 public:
  // Builds the map from the labels of the training data. num_classes 0 = infer (see above).
  static ClassMap infer(const std::vector<std::string>& labels, int64_t num_classes, const std::string& negative_label,
                        const std::string& source);

  int64_t num_classes() const { return static_cast<int64_t>(class_names_.size()); }
  const std::vector<std::string>& class_names() const { return class_names_; }
  const std::string& negative_label() const { return negative_label_; }

  // The C-bit target of a label value, or throws mil::Error(source, slide_id, "unknown label ...").
  std::vector<float> target(const std::string& label, const std::string& source, const std::string& slide_id) const;
  // A stratum id for stratified splits: the class index, or C for the negative label.
  int stratum(const std::vector<float>& target) const;
  // The display name of a target: its class names joined with '+', or the negative label.
  std::string name_of(const std::vector<float>& target) const;

  nlohmann::json to_json() const;
  static ClassMap from_json(const nlohmann::json& j, const std::string& source);

 private:
  static ClassMap infer_numeric(const std::vector<std::string>& labels, int64_t num_classes,
                                const std::string& negative_label, const std::string& source);

  bool numeric_ = false;                  // numeric labels use the ">= C is negative" rule
  std::vector<std::string> class_names_;  // bit c <-> class_names_[c]
  std::string negative_label_;            // the value (or, numeric, the first value) that maps to all-zero
};

}  // namespace mil
