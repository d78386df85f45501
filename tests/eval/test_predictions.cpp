// predictions.csv: the same columns from both binaries, and any slide id or class name reads back with our
// own CSV reader (ids with commas, quotes, line breaks, blanks and non-ASCII characters).
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "mil/eval/predictions.hpp"
#include "mil/io/csv.hpp"
#include "tests/test_util.hpp"

namespace mil {
namespace {

TEST(Predictions, OddSlideIdsAndClassNamesReadBack) {
  const std::vector<std::string> labels = {"tumour, grade 2", "benign \"typical\"", "normal"};
  const ClassMap classes = ClassMap::infer(labels, 0, "normal", "labels.csv");
  ASSERT_EQ(classes.num_classes(), 2);
  EvalResult r;
  r.slide_ids = {"slide,7", "say \"hi\"", "Gewebe-Öl ü", " padded ", "two\nlines"};
  for (size_t i = 0; i < r.slide_ids.size(); ++i) {
    r.probs.push_back({0.25 * static_cast<double>(i % 4), 0.5});
    r.targets.push_back({static_cast<int>(i % 2), 0});
  }
  const std::vector<std::vector<int>> predicted = {{1, 0}, {0, 1}, {0, 0}, {1, 1}, {0, 0}};
  PredictionsWriter writer(classes);
  writer.add(r, predicted, "val", 3);
  test::TempDir dir;
  writer.write(dir.file("predictions.csv"));

  const io::CsvTable t = io::read_csv(dir.file("predictions.csv"));
  const std::vector<std::string> header = {
      "slide_id",  "set",  "fold", "p_" + classes.class_names()[0], "p_" + classes.class_names()[1],
      "predicted", "label"};
  EXPECT_EQ(t.header, header);
  ASSERT_EQ(t.rows.size(), r.slide_ids.size());
  for (size_t i = 0; i < r.slide_ids.size(); ++i) {
    SCOPED_TRACE(r.slide_ids[i]);
    EXPECT_EQ(t.rows[i][0], r.slide_ids[i]);
    EXPECT_EQ(t.rows[i][1], "val");
    EXPECT_EQ(t.rows[i][2], "3");
    EXPECT_DOUBLE_EQ(std::stod(t.rows[i][3]), r.probs[i][0]);
    EXPECT_EQ(t.rows[i][5], classes.name_of(std::vector<float>(predicted[i].begin(), predicted[i].end())));
    EXPECT_EQ(t.rows[i][6], classes.name_of(std::vector<float>(r.targets[i].begin(), r.targets[i].end())));
  }
}

TEST(Predictions, UnlabelledSetsLeaveTheLabelEmpty) {
  const ClassMap classes = ClassMap::infer({"0", "1"}, 0, "", "labels.csv");
  EvalResult r;
  r.slide_ids = {"a"};
  r.probs = {{0.75}};
  PredictionsWriter writer(classes);
  writer.add(r, {{1}}, "test", -1);
  test::TempDir dir;
  writer.write(dir.file("p.csv"));
  const io::CsvTable t = io::read_csv(dir.file("p.csv"));
  ASSERT_EQ(t.rows.size(), 1u);
  EXPECT_EQ(t.rows[0], (std::vector<std::string>{"a", "test", "-1", "0.750000", classes.name_of({1.0f}), ""}));
}

}  // namespace
}  // namespace mil
