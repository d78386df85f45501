// Reading the authors' GPU-saved .pth files on a CPU-only libtorch, and refusing broken archives.
#include <gtest/gtest.h>

#include <fstream>

#include "mil/io/files.hpp"
#include "mil/io/torch_archive.hpp"
#include "mil/model/state_dict.hpp"
#include "mil/util/error.hpp"
#include "tests/test_util.hpp"

namespace mil {
namespace {

TEST(TorchArchive, ReadsCudaTaggedStateDictOntoCpu) {
  const StateDict weights = read_state_dict(test::data_path("reference/tcga_aggregator.pth"));
  const std::vector<std::pair<std::string, std::vector<int64_t>>> expected = {
      {"i_classifier.fc.0.weight", {2, 512}},   {"i_classifier.fc.0.bias", {2}},
      {"b_classifier.q.0.weight", {128, 512}},  {"b_classifier.q.0.bias", {128}},
      {"b_classifier.q.2.weight", {128, 128}},  {"b_classifier.q.2.bias", {128}},
      {"b_classifier.fcc.weight", {2, 2, 512}}, {"b_classifier.fcc.bias", {2}}};
  ASSERT_EQ(weights.size(), expected.size());
  for (size_t i = 0; i < expected.size(); ++i) {
    EXPECT_EQ(weights[i].first, expected[i].first);  // file order is preserved
    EXPECT_EQ(weights[i].second.sizes().vec(), expected[i].second) << expected[i].first;
    EXPECT_TRUE(weights[i].second.device().is_cpu());
    EXPECT_EQ(weights[i].second.scalar_type(), torch::kFloat32);
  }
}

TEST(TorchArchive, InfersArchitectureFromKeys) {
  const ModelConfig c16 = infer_config(read_state_dict(test::data_path("reference/c16_aggregator.pth")), "c16");
  EXPECT_EQ(c16.num_classes, 1);
  EXPECT_EQ(c16.feature_dim, 512);
  EXPECT_TRUE(c16.nonlinear_q);
  EXPECT_FALSE(c16.passing_v);
}

TEST(TorchArchive, BagClassifierOnlyFileIsRefusedNamingTheMissingKey) {
  // init.pth holds only b_classifier.q.* and v.1.*: not a whole model.
  const std::string path = test::data_path("reference/init.pth");
  const StateDict weights = read_state_dict(path);
  EXPECT_EQ(weights.size(), 4u);
  try {
    infer_config(weights, path);
    FAIL() << "expected mil::Error";
  } catch (const Error& e) {
    EXPECT_EQ(e.object(), "i_classifier.fc.0.weight");
    EXPECT_NE(std::string(e.what()).find("missing"), std::string::npos) << e.what();
  }
}

TEST(TorchArchive, NotAnArchiveIsAClearError) {
  test::TempDir dir;
  const std::string path = dir.file("garbage.pth");
  io::write_file_atomically(path, "this is not a zip file at all");
  try {
    io::read_torch_archive(path);
    FAIL() << "expected mil::Error";
  } catch (const Error& e) {
    EXPECT_EQ(e.file(), path);
    EXPECT_NE(e.reason().find("not a PyTorch zip archive"), std::string::npos) << e.what();
  }
}

TEST(TorchArchive, TruncatedArchiveIsAClearError) {
  test::TempDir dir;
  const std::string bytes = io::read_file(test::data_path("reference/c16_aggregator.pth"));
  const std::string path = dir.file("truncated.pth");
  io::write_file_atomically(path, std::string_view(bytes).substr(0, bytes.size() / 2));
  EXPECT_THROW(io::read_torch_archive(path), Error);
}

TEST(TorchArchive, MissingFileIsAClearError) {
  try {
    io::read_torch_archive("/nonexistent/model.pth");
    FAIL() << "expected mil::Error";
  } catch (const Error& e) {
    EXPECT_EQ(std::string(e.what()), "/nonexistent/model.pth: no such file");
  }
}

}  // namespace
}  // namespace mil
