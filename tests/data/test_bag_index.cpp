// The malformed-input catalogue: every bad channel ends in a mil::Error naming the file, the dataset and
// the reason, never a crash, a hang or NaN training.
#include <grp.h>
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "mil/data/bag_index.hpp"
#include "mil/data/bag_loader.hpp"
#include "mil/io/files.hpp"
#include "mil/io/h5_reader.hpp"
#include "mil/util/error.hpp"
#include "tests/test_util.hpp"

namespace mil {
namespace {

class Channel : public ::testing::Test {
 protected:
  std::string path(const std::string& name) const { return dir_.file(name); }

  void write_bag(const std::string& id, const torch::Tensor& features, const std::string& key = "features") {
    io::H5Writer(path(id + ".h5")).write(key, features);
  }
  void write_labels(const std::string& text) { io::write_file_atomically(path("labels.csv"), text); }

  BagIndex index(bool skip = false) {
    const LabelTable labels = read_label_csv(path("labels.csv"));
    const ClassMap classes = ClassMap::infer(labels.labels, 0, "", labels.path);
    IndexOptions options;
    options.skip_bad_slides = skip;
    return index_channel(dir_.path(), &labels, &classes, options);
  }

  // Indexing must fail with a message holding every one of `parts`.
  void expect_index_error(const std::vector<std::string>& parts) {
    EXPECT_TRUE(test::throws_error_naming([&] { index(); }, parts));
  }

  // Reading the (only) bag must fail with a message holding every one of `parts`.
  void expect_read_error(const std::vector<std::string>& parts) {
    const BagIndex idx = index();
    EXPECT_TRUE(test::throws_error_naming([&] { read_bag(idx.bags[0], 0, "features", false); }, parts));
  }

  test::TempDir dir_;
};

TEST_F(Channel, IndexesShapesSortedBySlideId) {
  std::filesystem::create_directories(path("h5_files"));
  write_bag("h5_files/b", torch::randn({5, 8}));
  write_bag("a", torch::randn({3, 8}).to(torch::kHalf));
  write_labels("slide_id,label\nb,1\na,0\n");
  const BagIndex idx = index();
  ASSERT_EQ(idx.bags.size(), 2u);
  EXPECT_EQ(idx.bags[0].slide_id, "a");
  EXPECT_EQ(idx.bags[0].dtype, "float16");
  EXPECT_EQ(idx.bags[0].target, std::vector<float>{0.0f});
  EXPECT_EQ(idx.bags[1].slide_id, "b");
  EXPECT_EQ(idx.bags[1].num_instances, 5);
  EXPECT_EQ(idx.bags[1].target, std::vector<float>{1.0f});
  EXPECT_EQ(idx.feature_dim, 8);
  EXPECT_EQ(idx.total_instances(), 8);
}

TEST_F(Channel, Float16AndFloat64AreReadAsFloat32) {
  const torch::Tensor values = torch::randn({6, 4});
  write_bag("half", values.to(torch::kHalf));
  write_bag("double", values.to(torch::kDouble));
  write_labels("slide_id,label\nhalf,0\ndouble,1\n");
  const BagIndex idx = index();
  const Bag dbl = read_bag(idx.bags[0], 0, "features", false);
  const Bag half = read_bag(idx.bags[1], 1, "features", false);
  EXPECT_EQ(half.features.scalar_type(), torch::kFloat);
  EXPECT_TRUE(torch::equal(dbl.features, values));
  EXPECT_TRUE(torch::equal(half.features, values.to(torch::kHalf).to(torch::kFloat)));
}

TEST_F(Channel, NotHdf5) {
  io::write_file_atomically(path("bad.h5"), "slide_id,features\n1,2,3\n");
  write_labels("slide_id,label\nbad,1\n");
  expect_index_error({path("bad.h5"), "not an HDF5 file"});
}

TEST_F(Channel, TruncatedFile) {
  write_bag("whole", torch::randn({200, 64}));
  const std::string bytes = io::read_file(path("whole.h5"));
  std::filesystem::remove(path("whole.h5"));
  io::write_file_atomically(path("cut.h5"), std::string_view(bytes).substr(0, bytes.size() / 2));
  write_labels("slide_id,label\ncut,1\n");
  // HDF5 may notice at open (superblock/EOF check) or at read; either way the file is named.
  try {
    const BagIndex idx = index();
    read_bag(idx.bags[0], 0, "features", false);
    FAIL() << "expected mil::Error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(path("cut.h5")), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("truncated"), std::string::npos) << e.what();
  }
}

TEST_F(Channel, MissingDataset) {
  write_bag("s", torch::randn({4, 4}), "feats");
  write_labels("slide_id,label\ns,1\n");
  expect_index_error({path("s.h5"), "no dataset 'features'"});
}

TEST_F(Channel, WrongRank) {
  write_bag("s", torch::randn({16}));
  write_labels("slide_id,label\ns,1\n");
  expect_index_error({path("s.h5"), "'features' has rank 1, need [N, D]"});
}

TEST_F(Channel, ZeroInstances) {
  write_bag("s", torch::zeros({0, 8}));
  write_labels("slide_id,label\ns,1\n");
  expect_index_error({path("s.h5"), "'features' has zero instances"});
}

TEST_F(Channel, UnsupportedDtype) {
  write_bag("s", torch::ones({4, 4}, torch::kInt));
  write_labels("slide_id,label\ns,1\n");
  expect_index_error({path("s.h5"), "unsupported dtype int32"});
}

TEST_F(Channel, NaNValues) {
  torch::Tensor f = torch::randn({10, 4});
  f[7][2] = std::numeric_limits<float>::quiet_NaN();
  write_bag("s", f);
  write_labels("slide_id,label\ns,1\n");
  expect_read_error({path("s.h5"), "'features'", "NaN or Inf", "row 7 of 10"});
}

TEST_F(Channel, InfValues) {
  torch::Tensor f = torch::randn({10, 4});
  f[3][0] = std::numeric_limits<float>::infinity();  // what a careless float16 cast of a large value gives
  write_bag("s", f.to(torch::kHalf));
  write_labels("slide_id,label\ns,1\n");
  expect_read_error({path("s.h5"), "NaN or Inf", "row 3"});
}

TEST_F(Channel, BadCoordsShape) {
  io::H5Writer w(path("s.h5"));
  w.write("features", torch::randn({5, 4}));
  w.write("coords", torch::zeros({4, 2}, torch::kLong));
  write_labels("slide_id,label\ns,1\n");
  expect_index_error({path("s.h5"), "'coords' has shape [4, 2], need [5, 2]"});
}

TEST_F(Channel, CsvWithoutLabelColumn) {
  write_bag("s", torch::randn({4, 4}));
  io::write_file_atomically(path("labels.csv"), "slide_id,class\ns,1\n");
  try {
    read_label_csv(path("labels.csv"));
    FAIL() << "expected mil::Error";
  } catch (const Error& e) {
    EXPECT_EQ(e.file(), path("labels.csv"));
    EXPECT_EQ(e.object(), "label");
    EXPECT_NE(e.reason().find("missing column (the header has: slide_id, class)"), std::string::npos) << e.what();
  }
}

TEST_F(Channel, UnknownLabel) {
  write_bag("s", torch::randn({4, 4}));
  const ClassMap classes = ClassMap::infer({"normal", "tumor"}, 0, "", "train labels");
  write_labels("slide_id,label\ns,benign\n");
  const LabelTable labels = read_label_csv(path("labels.csv"));
  try {
    index_channel(dir_.path(), &labels, &classes, {});
    FAIL() << "expected mil::Error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("unknown label 'benign' (known: tumor, negative: normal)"), std::string::npos)
        << e.what();
  }
}

TEST_F(Channel, EmptyChannel) {
  write_labels("slide_id,label\ns,1\n");
  expect_index_error({dir_.path(), "empty channel: no .h5 feature files found"});
}

TEST_F(Channel, MissingDirectory) {
  try {
    index_channel(dir_.file("nope"), nullptr, nullptr, {});
    FAIL() << "expected mil::Error";
  } catch (const Error& e) {
    EXPECT_EQ(std::string(e.what()), dir_.file("nope") + ": channel directory does not exist");
  }
}

TEST_F(Channel, UnreadableFile) {
  write_bag("s", torch::randn({4, 4}));
  write_labels("slide_id,label\ns,1\n");
  namespace fs = std::filesystem;
  fs::permissions(dir_.path(), fs::perms::owner_all | fs::perms::others_read | fs::perms::others_exec);
  fs::permissions(path("labels.csv"), fs::perms::owner_all | fs::perms::others_read);
  fs::permissions(path("s.h5"), fs::perms::none);
  // Root reads files whatever their mode, so the check runs in a child that drops to user "nobody".
  const pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    if (geteuid() == 0 && (setgroups(0, nullptr) != 0 || setgid(65534) != 0 || setuid(65534) != 0)) _exit(3);
    try {
      index();
      _exit(1);
    } catch (const Error& e) {
      const std::string msg = e.what();
      _exit(msg.find(path("s.h5")) != std::string::npos && msg.find("not an HDF5 file") == std::string::npos ? 0 : 2);
    }
    _exit(4);
  }
  int status = 0;
  waitpid(pid, &status, 0);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0) << "1: no error, 2: message without the file or misleading, 3: setuid failed";
}

TEST_F(Channel, SlideProblemsAreReportedTogether) {
  write_bag("a", torch::randn({4, 8}));
  write_bag("b", torch::randn({4, 8}));
  write_bag("c", torch::randn({4, 8}));
  write_bag("odd_dim", torch::randn({4, 6}));
  write_bag("unlabelled", torch::randn({4, 8}));
  std::filesystem::create_directories(path("other"));
  write_bag("other/a", torch::randn({4, 8}));
  write_labels("slide_id,label\na,0\nb,1\nc,0\nodd_dim,1\nmissing,1\n");
  expect_index_error({"4 bad slide(s)", "a: two files for one slide", "missing: listed in", "but has no .h5 file",
                      "unlabelled.h5 has no label", "D = 6, but the other slides have D = 8", "--on-bad-slide skip"});
}

TEST_F(Channel, SkipModeLeavesBadSlidesOutAndSaysWhich) {
  write_bag("good", torch::randn({4, 8}));
  write_bag("good2", torch::randn({4, 8}));
  write_bag("empty", torch::zeros({0, 8}));
  write_labels("slide_id,label\ngood,0\ngood2,1\nempty,1\nmissing,0\n");
  const BagIndex idx = index(/*skip=*/true);
  ASSERT_EQ(idx.bags.size(), 2u);
  EXPECT_EQ(idx.bags[0].slide_id, "good");
  ASSERT_EQ(idx.skipped.size(), 2u);
  EXPECT_NE(idx.skipped[0].find("empty: "), std::string::npos) << idx.skipped[0];
  EXPECT_NE(idx.skipped[1].find("missing: "), std::string::npos) << idx.skipped[1];
}

TEST_F(Channel, DuplicateIdInCsv) {
  write_labels("slide_id,label\ns,1\nt,0\ns,0\n");
  try {
    read_label_csv(path("labels.csv"));
    FAIL() << "expected mil::Error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("slide 's' is listed twice (first on line 2)"), std::string::npos) << e.what();
  }
}

// A chunked `features` declaring 10^12 x 64 float32 (256 TB) in a file of a few kB: no data is ever
// written, HDF5 stores only the header.
void write_hostile_header(const std::string& file) {
  H5::H5File h5(file, H5F_ACC_TRUNC);
  const hsize_t dims[2] = {1000000000000ULL, 64};
  const hsize_t chunk[2] = {1024, 64};
  H5::DSetCreatPropList props;
  props.setChunk(2, chunk);
  h5.createDataSet("features", H5::PredType::IEEE_F32LE, H5::DataSpace(2, dims), props);
}

TEST_F(Channel, AHostileHeaderIsANamedBadSlideThatSkipModeSkips) {
  write_bag("a", torch::ones({4, 64}));
  write_hostile_header(path("huge.h5"));
  EXPECT_LT(std::filesystem::file_size(path("huge.h5")), 20000u);
  write_labels("slide_id,label\na,1\nhuge,0\n");
  expect_index_error({path("huge.h5"), "1000000000000 x 64 float32", "--max-bag-bytes", "1 bad slide(s)"});
  const BagIndex idx = index(true);
  ASSERT_EQ(idx.bags.size(), 1u);
  EXPECT_EQ(idx.bags[0].slide_id, "a");
  ASSERT_EQ(idx.skipped.size(), 1u);
  EXPECT_NE(idx.skipped[0].find("huge"), std::string::npos);
}

TEST_F(Channel, MaxBagBytesIsTheLimit) {
  write_bag("a", torch::ones({4, 64}));  // 4 x 64 x 4 = 1024 bytes
  write_labels("slide_id,label\na,1\n");
  const LabelTable labels = read_label_csv(path("labels.csv"));
  const ClassMap classes = ClassMap::infer(labels.labels, 0, "", labels.path);
  IndexOptions options;
  options.max_bag_bytes = 1024;
  EXPECT_EQ(index_channel(dir_.path(), &labels, &classes, options).bags.size(), 1u);
  options.max_bag_bytes = 1023;
  EXPECT_THROW(index_channel(dir_.path(), &labels, &classes, options), Error);
}

// Reading such a slide (an index built with a raised limit, or a file changed after indexing) fails with
// the file's name, not with libtorch's allocator message alone.
TEST_F(Channel, AnAllocationFailureWhileReadingNamesTheFile) {
  write_hostile_header(path("huge.h5"));
  try {
    io::H5Reader(path("huge.h5")).read("features");
    ADD_FAILURE() << "expected mil::Error";
  } catch (const Error& e) {
    EXPECT_EQ(e.file(), path("huge.h5"));
    EXPECT_NE(e.reason().find("cannot allocate 1000000000000 x 64 float32"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace mil
