// The CSV readers: the table reader itself, labels.csv (read, classes inferred, every label mapped to its
// target as the index does) and CLAM's splits_<k>.csv. Any bytes as the file.
#include <string>
#include <vector>

#include "fuzz/fuzz_support.hpp"
#include "mil/data/labels.hpp"
#include "mil/data/splits.hpp"
#include "mil/io/csv.hpp"

namespace {

void read_labels(const std::string& path, const std::string& negative_label) {
  const mil::LabelTable table = mil::read_label_csv(path);
  const mil::ClassMap classes = mil::ClassMap::infer(table.labels, 0, negative_label, path);
  for (size_t i = 0; i < table.labels.size(); ++i) {
    const std::vector<float> target = classes.target(table.labels[i], path, table.slide_ids[i]);
    (void)classes.stratum(target);
    (void)classes.name_of(target);
  }
  (void)mil::ClassMap::from_json(classes.to_json(), path);
}

}  // namespace

extern "C" int DSMIL_FUZZ_ENTRY(const uint8_t* data, size_t size) {
  mil::fuzz::TempDir dir;
  const std::string path = dir.write("labels.csv", std::string(reinterpret_cast<const char*>(data), size));
  mil::fuzz::guarded("csv", [&] {
    const mil::io::CsvTable table = mil::io::read_csv(path);
    if (!table.header.empty()) (void)table.require_column(table.header.back());
  });
  mil::fuzz::guarded("csv", [&] { read_labels(path, ""); });
  mil::fuzz::guarded("csv", [&] { read_labels(path, "0"); });
  return mil::fuzz::guarded("csv", [&] {
    (void)mil::read_clam_split_csv(path, {"slide_1", "slide,2", "A", "B", "0", "1"});
  });
}
