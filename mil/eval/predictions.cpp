#include "mil/eval/predictions.hpp"

#include <fmt/format.h>

#include "mil/io/csv.hpp"
#include "mil/io/files.hpp"

namespace mil {
namespace {

std::string class_name(const ClassMap& classes, const std::vector<int>& bits) {
  return classes.name_of(std::vector<float>(bits.begin(), bits.end()));
}

}  // namespace

PredictionsWriter::PredictionsWriter(const ClassMap& classes) : classes_(classes) {
  text_ = "slide_id,set,fold";
  for (const auto& name : classes_.class_names()) text_ += fmt::format(",{}", io::csv_field(fmt::format("p_{}", name)));
  text_ += ",predicted,label\n";
}

void PredictionsWriter::add(const EvalResult& r, const std::vector<std::vector<int>>& predicted, const std::string& set,
                            int fold) {
  for (size_t i = 0; i < r.slide_ids.size(); ++i) {
    text_ += fmt::format("{},{},{}", io::csv_field(r.slide_ids[i]), set, fold);
    for (double p : r.probs[i]) text_ += fmt::format(",{:.6f}", p);
    text_ += fmt::format(",{},{}\n", io::csv_field(class_name(classes_, predicted[i])),
                         r.targets.empty() ? std::string() : io::csv_field(class_name(classes_, r.targets[i])));
  }
}

void PredictionsWriter::write(const std::string& path) const {
  io::write_file_atomically(path, text_);
}

}  // namespace mil
