// Every CSV the project writes reads back through its own reader field for field: ids with commas, quotes,
// line breaks, padding and non-ASCII characters included (a slide named `slide,7` used to make a row with
// one field too many in predictions.csv).
#include <gtest/gtest.h>

#include <filesystem>
#include <set>

#include "mil/data/synthetic.hpp"
#include "mil/dist/communicator.hpp"
#include "mil/eval/eval_job.hpp"
#include "mil/io/csv.hpp"
#include "mil/io/files.hpp"
#include "mil/train/trainer.hpp"
#include "tests/test_util.hpp"

namespace mil {
namespace {

namespace fs = std::filesystem;

const std::vector<std::string> kAwkwardIds = {"slide,7", "say \"hi\"", "naïve-切片-Ωmega", " padded ", "plain"};

TEST(CsvField, QuotesOnlyWhereNeeded) {
  EXPECT_EQ(io::csv_field("plain"), "plain");
  EXPECT_EQ(io::csv_field("naïve"), "naïve");
  EXPECT_EQ(io::csv_field(""), "");
  EXPECT_EQ(io::csv_field("a,b"), "\"a,b\"");
  EXPECT_EQ(io::csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
  EXPECT_EQ(io::csv_field("two\nlines"), "\"two\nlines\"");
  EXPECT_EQ(io::csv_field("cr\r"), "\"cr\r\"");
  EXPECT_EQ(io::csv_field(" padded"), "\" padded\"");
}

TEST(CsvField, WrittenFieldsReadBackUnchanged) {
  test::TempDir dir;
  std::vector<std::string> values = kAwkwardIds;
  values.push_back("two\r\nlines");
  std::string text = "id,value\n";
  for (size_t i = 0; i < values.size(); ++i) text += io::csv_field(values[i]) + "," + std::to_string(i) + "\n";
  io::write_file_atomically(dir.file("t.csv"), text);
  const io::CsvTable t = io::read_csv(dir.file("t.csv"));
  ASSERT_EQ(t.rows.size(), values.size());
  for (size_t i = 0; i < values.size(); ++i) {
    EXPECT_EQ(t.rows[i][0], values[i]);
    EXPECT_EQ(t.rows[i][1], std::to_string(i));
  }
}

// Hand-written CSVs (a spreadsheet export, a label file typed by a person): spaces around a quoted field are
// layout, not value; text after the closing quote is refused.
TEST(ReadCsv, PaddingAroundAQuotedFieldIsNotPartOfIt) {
  test::TempDir dir;
  io::write_file_atomically(dir.file("t.csv"), "id , label\n  \"a, b\"  ,\t\"x\"\t\n\" c \" , y \n");
  const io::CsvTable t = io::read_csv(dir.file("t.csv"));
  EXPECT_EQ(t.header, (std::vector<std::string>{"id", "label"}));
  ASSERT_EQ(t.rows.size(), 2u);
  EXPECT_EQ(t.rows[0], (std::vector<std::string>{"a, b", "x"}));
  EXPECT_EQ(t.rows[1], (std::vector<std::string>{" c ", "y"}));
  io::write_file_atomically(dir.file("bad.csv"), "id,label\n\"a\" b,x\n");
  const std::string message = test::error_message([&] { io::read_csv(dir.file("bad.csv")); });
  EXPECT_NE(message.find("bad.csv"), std::string::npos) << message;
  EXPECT_NE(message.find("'line 2': text after a quoted field"), std::string::npos) << message;
}

// dsmil_train's and dsmil_eval's predictions.csv on a channel of awkwardly named slides.
TEST(PredictionsCsv, AwkwardSlideIdsReadBackFromBothWriters) {
  test::TempDir dir;
  SyntheticOptions o;
  o.num_bags = 10;
  o.feature_dim = 8;
  o.log_mean_instances = 2.5;
  write_synthetic_channel(dir.file("train"), o);
  // Rename five slides (files and labels) to the awkward ids.
  const io::CsvTable labels = io::read_csv(dir.file("train/labels.csv"));
  std::string text = "slide_id,label\n";
  for (size_t i = 0; i < labels.rows.size(); ++i) {
    std::string id = labels.rows[i][0];
    if (i < kAwkwardIds.size()) {
      fs::rename(dir.file("train/" + id + ".h5"), dir.file("train/" + kAwkwardIds[i] + ".h5"));
      id = kAwkwardIds[i];
    }
    text += io::csv_field(id) + "," + labels.rows[i][1] + "\n";
  }
  io::write_file_atomically(dir.file("train/labels.csv"), text);

  TrainConfig cfg;
  cfg.train_dir = dir.file("train");
  cfg.labels = dir.file("train/labels.csv");
  cfg.validation_dir = cfg.train_dir;  // every slide gets a prediction row
  cfg.validation_labels = cfg.labels;
  cfg.test_dir = cfg.train_dir;
  cfg.test_labels = cfg.labels;
  cfg.model_dir = dir.file("model");
  cfg.output_dir = dir.file("output");
  cfg.checkpoint_dir = dir.file("checkpoints");
  cfg.tensorboard_dir = "none";
  cfg.epochs = 1;
  cfg.log_level = "warn";
  LocalCommunicator comm;
  run_training(cfg, comm);
  EvalConfig eval;
  eval.models = {cfg.model_dir};
  eval.test_dir = cfg.train_dir;
  eval.out_dir = dir.file("eval");
  eval.log_level = "warn";
  run_evaluation(eval);

  for (const std::string& file : {dir.file("output/predictions.csv"), dir.file("eval/predictions.csv")}) {
    SCOPED_TRACE(file);
    const io::CsvTable t = io::read_csv(file);  // throws on a row with a field too many
    const size_t id = t.require_column("slide_id");
    std::set<std::string> ids;
    for (const auto& row : t.rows) ids.insert(row[id]);
    for (const std::string& awkward : kAwkwardIds) EXPECT_EQ(ids.count(awkward), 1u) << awkward;
  }
}

}  // namespace
}  // namespace mil
