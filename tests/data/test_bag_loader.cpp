// The prefetching loader: same bags in the order asked, bounded read-ahead, a RAM cache that returns
// the same data, and errors that surface at the bag that caused them.
#include <gtest/gtest.h>

#include <cstring>

#include "mil/data/bag_loader.hpp"
#include "mil/data/synthetic.hpp"
#include "mil/io/h5_reader.hpp"
#include "mil/util/error.hpp"
#include "tests/test_util.hpp"

namespace mil {
namespace {

class Loader : public ::testing::Test {
 protected:
  void SetUp() override {
    SyntheticOptions o;
    o.num_bags = 12;
    o.feature_dim = 16;
    o.log_mean_instances = 3.0;
    write_synthetic_channel(dir_.path(), o);
    labels_ = read_label_csv(dir_.file("labels.csv"));
    classes_ = ClassMap::infer(labels_.labels, 0, "", labels_.path);
    index_ = index_channel(dir_.path(), &labels_, &classes_, {});
  }

  test::TempDir dir_;
  LabelTable labels_;
  ClassMap classes_;
  BagIndex index_;
};

TEST_F(Loader, ReturnsTheRequestedBagsInOrder) {
  BagLoader loader(index_, {});
  const std::vector<int64_t> order = {5, 0, 11, 5, 3};
  loader.start(order);
  for (int64_t i : order) {
    ASSERT_TRUE(loader.has_next());
    const Bag bag = loader.next();
    EXPECT_EQ(bag.index, i);
    EXPECT_TRUE(torch::equal(bag.features, read_bag(index_.bags[i], i, "features", false).features));
  }
  EXPECT_FALSE(loader.has_next());
  EXPECT_THROW(loader.next(), Error);
}

TEST_F(Loader, RamCacheServesLaterEpochsWithTheSameData) {
  LoaderOptions opts;
  opts.cache = CacheMode::kFloat32;
  BagLoader loader(index_, opts);
  std::vector<int64_t> all(index_.bags.size());
  std::iota(all.begin(), all.end(), 0);
  std::vector<torch::Tensor> first;
  loader.start(all);
  for (size_t i = 0; i < all.size(); ++i) first.push_back(loader.next().features);
  EXPECT_EQ(loader.cached_bags(), static_cast<int64_t>(all.size()));
  EXPECT_EQ(loader.cache_bytes(), index_.total_instances() * index_.feature_dim * 4);

  // Remove the files: a second epoch must come from RAM alone.
  for (const auto& b : index_.bags) std::filesystem::remove(b.path);
  loader.start(all);
  for (size_t i = 0; i < all.size(); ++i) EXPECT_TRUE(torch::equal(loader.next().features, first[i]));
}

// A pass the cache holds entirely is served on the caller's thread (no reader): the same bags, in the order
// asked, with the pass's end and the rounding a bfloat16 loader asks of a float32 cache as on the reader path.
TEST_F(Loader, ACachedPassServesTheOrderAskedAsTheReaderWould) {
  auto cache = std::make_shared<BagCache>(CacheMode::kFloat32);
  BagLoader loader(index_, {}, cache);
  loader.start({0, 1, 2, 3, 4, 5});
  std::vector<torch::Tensor> first;
  while (loader.has_next()) first.push_back(loader.next().features);
  for (const auto& b : index_.bags) std::filesystem::remove(b.path);

  const std::vector<int64_t> order = {5, 0, 3, 5};
  loader.start(order);
  for (int64_t i : order) {
    ASSERT_TRUE(loader.has_next());
    const Bag bag = loader.next();
    EXPECT_EQ(bag.index, i);
    EXPECT_TRUE(torch::equal(bag.features, first[static_cast<size_t>(i)]));
  }
  EXPECT_FALSE(loader.has_next());
  EXPECT_THROW(loader.next(), Error);

  LoaderOptions bf16;
  bf16.bfloat16 = true;
  BagLoader rounding(index_, bf16, cache);
  rounding.start({2});
  const Bag bag = rounding.next();
  EXPECT_EQ(bag.features.scalar_type(), torch::kBFloat16);
  EXPECT_TRUE(torch::equal(bag.features, first[2].to(torch::kBFloat16)));

  loader.start({1, 7});  // bag 7 is not cached (and its file is gone): the reader's path, its error at bag 7
  EXPECT_EQ(loader.next().index, 1);
  EXPECT_THROW(loader.next(), Error);
}

TEST_F(Loader, Float16CacheHalvesMemory) {
  LoaderOptions opts;
  opts.cache = CacheMode::kFloat16;
  BagLoader loader(index_, opts);
  loader.start({0, 1});
  const Bag b0 = loader.next();
  loader.next();
  EXPECT_EQ(loader.cache_bytes(),
            (index_.bags[0].num_instances + index_.bags[1].num_instances) * index_.feature_dim * 2);
  // Float16 precision, and the same values on the first read (from disk) as on later ones (from RAM).
  const torch::Tensor exact = read_bag(index_.bags[0], 0, "features", false).features;
  EXPECT_TRUE(torch::allclose(b0.features, exact, 1e-3, 1e-2));
  EXPECT_TRUE(torch::equal(b0.features, exact.to(torch::kHalf).to(torch::kFloat)));
  loader.start({0});
  EXPECT_TRUE(torch::equal(loader.next().features, b0.features));
}

TEST_F(Loader, ErrorSurfacesAtTheBadBag) {
  BagLoader loader(index_, {});
  std::filesystem::remove(index_.bags[2].path);
  loader.start({0, 1, 2, 3});
  EXPECT_EQ(loader.next().index, 0);
  EXPECT_EQ(loader.next().index, 1);
  try {
    loader.next();
    FAIL() << "expected mil::Error";
  } catch (const Error& e) {
    EXPECT_EQ(e.file(), index_.bags[2].path);
    EXPECT_EQ(e.reason(), "no such file");
  }
}

TEST_F(Loader, RestartingAPassDiscardsTheOldOne) {
  LoaderOptions opts;
  opts.prefetch = 2;
  BagLoader loader(index_, opts);
  loader.start({0, 1, 2, 3, 4, 5});
  loader.next();
  loader.start({7, 8});
  EXPECT_EQ(loader.next().index, 7);
  EXPECT_EQ(loader.next().index, 8);
  EXPECT_FALSE(loader.has_next());
}

// Same bytes, not merely equal values (equal() would accept -0 for 0).
bool same_bits(const torch::Tensor& a, const torch::Tensor& b) {
  return a.scalar_type() == b.scalar_type() && a.sizes() == b.sizes() &&
         std::memcmp(a.data_ptr(), b.data_ptr(), static_cast<size_t>(a.nbytes())) == 0;
}

// CLAM's extractor layout (chunks of one instance, unlimited first dimension, appended in batches) and
// other whole-row chunkings read exactly as the contiguous files of the same slides.
TEST(ChunkedLayouts, ReadBitForBitAsContiguousFiles) {
  for (const bool float16 : {false, true}) {
    SyntheticOptions o;
    o.num_bags = 5;
    o.feature_dim = 24;
    o.log_mean_instances = 5.5;  // ~250 instances: several append batches
    o.float16 = float16;
    test::TempDir contiguous;
    write_synthetic_channel(contiguous.path(), o);
    const BagIndex reference = index_channel(contiguous.path(), nullptr, nullptr, {});
    for (const int64_t chunk_rows : {1, 7}) {  // 7: the last chunk reaches past the end of the dataset
      SCOPED_TRACE("float16 " + std::to_string(float16) + ", chunk rows " + std::to_string(chunk_rows));
      o.chunk_rows = chunk_rows;
      o.append_rows = 64;
      test::TempDir chunked;
      write_synthetic_channel(chunked.path(), o);
      const BagIndex index = index_channel(chunked.path(), nullptr, nullptr, {});
      ASSERT_EQ(index.bags.size(), reference.bags.size());
      for (size_t i = 0; i < index.bags.size(); ++i) {
        EXPECT_EQ(index.bags[i].chunk_rows, chunk_rows);
        EXPECT_EQ(reference.bags[i].chunk_rows, 0);
        const io::H5DatasetInfo info = io::H5Reader(index.bags[i].path).info("features");
        EXPECT_EQ(info.chunk, (std::vector<int64_t>{chunk_rows, o.feature_dim}));
        // The stored dtype as stored, and the loader's float32 view with coordinates.
        EXPECT_TRUE(same_bits(io::H5Reader(index.bags[i].path).read("features"),
                              io::H5Reader(reference.bags[i].path).read("features")));
        EXPECT_TRUE(same_bits(io::H5Reader(index.bags[i].path, true).read("features"),
                              io::H5Reader(reference.bags[i].path).read("features")));
        const Bag got = read_bag(index.bags[i], 0, "features", true);
        const Bag want = read_bag(reference.bags[i], 0, "features", true);
        EXPECT_TRUE(same_bits(got.features, want.features));
        EXPECT_TRUE(same_bits(got.coords, want.coords));
      }
    }
  }
}

// The loader's own float16 -> float32 conversion (a plain loop off torch's thread pool) gives torch's values.
TEST(ChunkedLayouts, Float16FilesConvertAsTorchDoes) {
  SyntheticOptions o;
  o.num_bags = 2;
  o.feature_dim = 19;
  o.float16 = true;
  test::TempDir dir;
  write_synthetic_channel(dir.path(), o);
  const BagIndex index = index_channel(dir.path(), nullptr, nullptr, {});
  for (const BagInfo& b : index.bags) {
    EXPECT_TRUE(
        same_bits(read_bag(b, 0, "features", false).features, io::H5Reader(b.path).read("features").to(torch::kFloat)));
  }
}

}  // namespace
}  // namespace mil
