#pragma once
// predictions.csv, the same columns from dsmil_train and dsmil_eval:
//   slide_id,set,fold,p_<class>...,predicted,label
// `set` is val or test, `fold` the model's fold (-1: the vote of every model), `predicted` and `label` class
// names (label empty when the set has none). Fields are quoted as RFC 4180 needs, so any slide id reads back.
#include <string>
#include <vector>

#include "mil/data/labels.hpp"
#include "mil/eval/evaluation.hpp"

namespace mil {

class PredictionsWriter {
 public:
  explicit PredictionsWriter(const ClassMap& classes);

  // One row per bag of `r`, predicted labels given per (bag, class).
  void add(const EvalResult& r, const std::vector<std::vector<int>>& predicted, const std::string& set, int fold);

  // Replaces `path` atomically with the rows added so far.
  void write(const std::string& path) const;

 private:
  const ClassMap& classes_;
  std::string text_;
};

}  // namespace mil
