#include "mil/data/labels.hpp"

#include <algorithm>
#include <map>
#include <set>

#include "mil/io/csv.hpp"
#include "mil/util/error.hpp"

namespace mil {
namespace {

// Non-negative integer labels ("0", "1", "2"): DSMIL's numeric convention applies.
bool parse_index(const std::string& s, int64_t* out) {
  if (s.empty() || s.size() > 9) return false;
  if (!std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; })) return false;
  *out = std::stoll(s);
  return true;
}

std::string join(const std::vector<std::string>& v, const std::string& sep) {
  std::string out;
  for (const auto& s : v) out += (out.empty() ? "" : sep) + s;
  return out;
}

}  // namespace

LabelTable read_label_csv(const std::string& path) {
  const io::CsvTable csv = io::read_csv(path);
  const size_t id_col = csv.require_column("slide_id");
  const size_t label_col = csv.require_column("label");
  LabelTable table;
  table.path = path;
  std::map<std::string, size_t> first_line;
  for (size_t r = 0; r < csv.rows.size(); ++r) {
    const std::string& id = csv.rows[r][id_col];
    const std::string& label = csv.rows[r][label_col];
    const std::string where = "line " + std::to_string(csv.line_numbers[r]);
    if (id.empty()) throw Error(path, where, "empty slide_id");
    if (label.empty()) throw Error(path, where, "slide '" + id + "' has an empty label");
    auto [it, inserted] = first_line.emplace(id, csv.line_numbers[r]);
    if (!inserted) {
      throw Error(path, where, "slide '" + id + "' is listed twice (first on line " + std::to_string(it->second) + ")");
    }
    table.slide_ids.push_back(id);
    table.labels.push_back(label);
  }
  if (table.slide_ids.empty()) throw Error(path, "", "no labelled slides (header only)");
  return table;
}

ClassMap ClassMap::infer(const std::vector<std::string>& labels, int64_t num_classes, const std::string& negative_label,
                         const std::string& source) {
  if (labels.empty()) throw Error(source, "", "no labels to infer classes from");
  if (num_classes < 0) throw Error(source, "--num-classes", "must be >= 0 (0 = infer)");
  ClassMap map;
  map.numeric_ = std::all_of(labels.begin(), labels.end(), [](const std::string& s) {
    int64_t v;
    return parse_index(s, &v);
  });

  if (map.numeric_) return infer_numeric(labels, num_classes, negative_label, source);

  std::set<std::string> names(labels.begin(), labels.end());
  if (!negative_label.empty()) {
    if (names.count(negative_label) == 0) {
      throw Error(
          source, "--negative-label",
          "'" + negative_label + "' does not occur in the labels (" + join({names.begin(), names.end()}, ", ") + ")");
    }
    names.erase(negative_label);
    map.negative_label_ = negative_label;
    map.class_names_.assign(names.begin(), names.end());
  } else if (names.size() == 2) {
    map.negative_label_ = *names.begin();
    map.class_names_ = {*names.rbegin()};
  } else {
    map.class_names_.assign(names.begin(), names.end());
  }
  if (num_classes != 0 && num_classes != map.num_classes()) {
    throw Error(source, "--num-classes",
                std::to_string(num_classes) + " given, but the labels name " + std::to_string(map.num_classes()) +
                    " classes (" + join(map.class_names_, ", ") + ")" +
                    (map.negative_label_.empty() ? "" : " besides the negative label '" + map.negative_label_ + "'"));
  }
  if (map.class_names_.empty()) throw Error(source, "", "every label is the negative label: nothing to learn");
  return map;
}

ClassMap ClassMap::infer_numeric(const std::vector<std::string>& labels, int64_t num_classes,
                                 const std::string& negative_label, const std::string& source) {
  ClassMap map;
  map.numeric_ = true;
  std::set<int64_t> values;
  for (const auto& s : labels) {
    int64_t v;
    parse_index(s, &v);
    values.insert(v);
  }
  int64_t negative = -1;
  if (!negative_label.empty() && !parse_index(negative_label, &negative)) {
    throw Error(source, "--negative-label", "'" + negative_label + "' is not an integer, but the labels are");
  }
  const int64_t k = *values.rbegin() + 1;  // values 0..k-1
  int64_t c = num_classes;
  if (c == 0) {
    // An inferred class count is bounded: one stray value (999999999) must not make a billion classes.
    const int64_t implied = negative >= k - 1 ? negative : (negative >= 0 ? k - 1 : (k <= 2 ? 1 : k));
    if (implied > kMaxInferredClasses) {
      const int64_t culprit = negative >= k - 1 ? negative : *values.rbegin();
      throw Error(source, negative >= k - 1 ? "--negative-label" : "label " + std::to_string(culprit),
                  "numeric label " + std::to_string(culprit) + " implies " + std::to_string(implied) +
                      " classes (more than " + std::to_string(kMaxInferredClasses) +
                      "); pass --num-classes C (values >= C are the negative label) or use string labels");
    }
    c = implied;
  }
  if (c == 1) {
    if (negative > 0) throw Error(source, "--negative-label", "binary numeric labels are 0 (negative) and 1");
    map.class_names_ = {"1"};
    map.negative_label_ = "0";
    return map;
  }
  if (negative >= 0 && negative < c && num_classes != 0) {
    throw Error(source, "--negative-label",
                std::to_string(negative) + " is a class index; with --num-classes " + std::to_string(c) +
                    " the negative label must be >= " + std::to_string(c));
  }
  // Class c is the c-th value of 0..c (0..c-1 when the negative label is not among them) other than the
  // negative label: --negative-label 0 with labels 0-3 makes classes 1, 2, 3.
  const bool inside = negative >= 0 && negative < k - 1 && num_classes == 0;
  for (int64_t v = 0; static_cast<int64_t>(map.class_names_.size()) < c; ++v) {
    if (!(inside && v == negative)) map.class_names_.push_back(std::to_string(v));
  }
  map.negative_label_ = std::to_string(negative >= 0 ? negative : c);
  if (map.class_names_.empty()) throw Error(source, "", "every label is the negative label: nothing to learn");
  return map;
}

std::vector<float> ClassMap::target(const std::string& label, const std::string& source,
                                    const std::string& slide_id) const {
  std::vector<float> t(class_names_.size(), 0.0f);
  if (numeric_) {
    int64_t v;
    if (!parse_index(label, &v)) {
      throw Error(source, slide_id, "label '" + label + "' is not a non-negative integer like the training labels");
    }
    if (class_names_.size() == 1) {
      if (v > 1) throw Error(source, slide_id, "label " + label + " is not 0 or 1 (binary task)");
      t[0] = static_cast<float>(v);
      return t;
    }
    // A value naming no class is the negative label, or >= C (the reference's rule): all zero.
    auto it = std::find(class_names_.begin(), class_names_.end(), std::to_string(v));
    if (it != class_names_.end()) t[static_cast<size_t>(it - class_names_.begin())] = 1.0f;
    return t;
  }
  if (label == negative_label_) return t;
  auto it = std::find(class_names_.begin(), class_names_.end(), label);
  if (it == class_names_.end()) {
    throw Error(source, slide_id,
                "unknown label '" + label + "' (known: " + join(class_names_, ", ") +
                    (negative_label_.empty() ? "" : ", negative: " + negative_label_) + ")");
  }
  t[static_cast<size_t>(it - class_names_.begin())] = 1.0f;
  return t;
}

int ClassMap::stratum(const std::vector<float>& target) const {
  for (size_t c = 0; c < target.size(); ++c) {
    if (target[c] > 0.5f) return static_cast<int>(c);
  }
  return static_cast<int>(target.size());
}

std::string ClassMap::name_of(const std::vector<float>& target) const {
  std::vector<std::string> names;
  for (size_t c = 0; c < target.size(); ++c) {
    if (target[c] > 0.5f) names.push_back(class_names_[c]);
  }
  return names.empty() ? negative_label_ : join(names, "+");
}

nlohmann::json ClassMap::to_json() const {
  return {{"numeric", numeric_}, {"class_names", class_names_}, {"negative_label", negative_label_}};
}

ClassMap ClassMap::from_json(const nlohmann::json& j, const std::string& source) {
  ClassMap map;
  try {
    map.numeric_ = j.at("numeric").get<bool>();
    map.class_names_ = j.at("class_names").get<std::vector<std::string>>();
    map.negative_label_ = j.at("negative_label").get<std::string>();
  } catch (const nlohmann::json::exception& e) {
    throw Error(source, "classes", std::string("invalid class map: ") + e.what());
  }
  return map;
}

}  // namespace mil
