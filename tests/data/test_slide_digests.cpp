// Slide digests: XXH3 of the features as stored, the same whichever reader reads them (contiguous or CLAM's
// one chunk per instance), recorded by the loader on its reader thread (with or without the RAM cache), and
// a changed slide named at the read that notices it.
#include <H5Cpp.h>
#include <gtest/gtest.h>

#include <numeric>

#include "mil/data/bag_loader.hpp"
#include "mil/data/slide_digests.hpp"
#include "mil/data/synthetic.hpp"
#include "mil/util/error.hpp"
#include "tests/test_util.hpp"

namespace mil {
namespace {

// Adds 0.5 to the first feature of `file` in place: the same shape, dtype and layout, other values.
void perturb_features(const std::string& file) {
  H5::H5File h5(file, H5F_ACC_RDWR);
  H5::DataSet ds = h5.openDataSet("features");
  hsize_t dims[2];
  ds.getSpace().getSimpleExtentDims(dims);
  std::vector<float> values(dims[0] * dims[1]);
  ds.read(values.data(), H5::PredType::NATIVE_FLOAT);
  values[0] += 0.5f;
  ds.write(values.data(), H5::PredType::NATIVE_FLOAT);
}

TEST(SlideDigests, HexRoundTripsAndRejectsOtherText) {
  for (uint64_t d : {uint64_t{0}, uint64_t{0x0123456789abcdef}, ~uint64_t{0}}) {
    EXPECT_EQ(digest_hex(d).size(), 16u);
    EXPECT_EQ(parse_digest_hex(digest_hex(d)), d);
  }
  for (const char* bad : {"", "0123", "0123456789ABCDEF", "0123456789abcdeg", "0123456789abcdef0"}) {
    EXPECT_THROW(parse_digest_hex(bad), Error) << bad;
  }
}

TEST(SlideDigests, ASlideDifferentFromTheCheckpointsIsNamed) {
  SlideDigests book("train");
  book.expect({{"a", 1}, {"b", 2}}, "/ckpt/ckpt-7");
  EXPECT_NO_THROW(book.record("a", "/data/a.h5", 1));
  EXPECT_TRUE(test::throws_error_naming(
      [&] { book.record("b", "/data/b.h5", 3); },
      {"/data/b.h5", "slide b", "changed since checkpoint /ckpt/ckpt-7 was written", "--no-resume", "--checkpoint-dir"},
      "slide b"));
  EXPECT_NO_THROW(book.record("c", "/data/c.h5", 4));  // not in the checkpoint: nothing to compare with
  // A change while the job runs is named too.
  EXPECT_TRUE(test::throws_error_naming([&] { book.record("c", "/data/c.h5", 5); },
                                        {"/data/c.h5", "changed while the job ran"}));
  // What the next checkpoint keeps: every slide read, and the checkpoint's slides not read again (b).
  EXPECT_EQ(book.all(), (DigestMap{{"a", 1}, {"b", 2}, {"c", 4}}));
  EXPECT_EQ(book.take_fresh(), (DigestMap{{"a", 1}, {"c", 4}}));
  EXPECT_TRUE(book.take_fresh().empty());
  book.merge({{"d", 6}});  // another rank's read
  EXPECT_TRUE(book.take_fresh().empty());
  EXPECT_EQ(book.all().at("d"), 6u);
}

// The digest is of the values as the file stores them: a chunked (CLAM) file and a contiguous one of the
// same slides have the same digests, float16 ones included (before conversion to float32).
TEST(SlideDigests, TheSameValuesInAnyLayoutHaveTheSameDigest) {
  for (const bool float16 : {false, true}) {
    SCOPED_TRACE(float16 ? "float16" : "float32");
    SyntheticOptions o;
    o.num_bags = 4;
    o.feature_dim = 8;
    o.log_mean_instances = 2.5;
    o.float16 = float16;
    test::TempDir contiguous, chunked;
    write_synthetic_channel(contiguous.path(), o);
    o.chunk_rows = 1;
    write_synthetic_channel(chunked.path(), o);
    const BagIndex a = index_channel(contiguous.path(), nullptr, nullptr, {});
    const BagIndex b = index_channel(chunked.path(), nullptr, nullptr, {});
    for (size_t i = 0; i < a.bags.size(); ++i) {
      const Bag bag = read_bag(a.bags[i], 0, "features", false);
      EXPECT_EQ(bag.digest, read_bag(b.bags[i], 0, "features", false).digest);
      // The file's own bytes: float16 values convert to float32 and back exactly.
      const torch::Tensor stored = float16 ? bag.features.to(torch::kHalf) : bag.features;
      EXPECT_EQ(bag.digest, feature_digest(stored.data_ptr(), stored.nbytes()));
    }
    perturb_features(b.bags[0].path);
    EXPECT_NE(read_bag(b.bags[0], 0, "features", false).digest, read_bag(a.bags[0], 0, "features", false).digest);
  }
}

// The loader records every slide it reads, and a slide whose values changed since the checkpoint fails at
// its bag, also with the float16 RAM cache (whose rounded values would otherwise hide nothing: the check is
// on the file's values) and with CLAM's layout; the changed values never enter the cache.
TEST(SlideDigests, TheLoaderChecksEachSlideAsItReadsIt) {
  for (const CacheMode cache : {CacheMode::kNone, CacheMode::kFloat16}) {
    SCOPED_TRACE(cache == CacheMode::kNone ? "no cache" : "float16 cache");
    SyntheticOptions o;
    o.num_bags = 6;
    o.feature_dim = 8;
    o.log_mean_instances = 2.5;
    o.chunk_rows = 1;
    test::TempDir dir;
    write_synthetic_channel(dir.path(), o);
    BagIndex index = index_channel(dir.path(), nullptr, nullptr, {});
    index.digests = std::make_shared<SlideDigests>("train");
    std::vector<int64_t> all(index.bags.size());
    std::iota(all.begin(), all.end(), 0);
    DigestMap first;
    {
      BagLoader loader(index, {"features", 2, cache, false});
      loader.start(all);
      for (size_t i = 0; i < all.size(); ++i) {
        const Bag bag = loader.next();
        first[index.bags[i].slide_id] = bag.digest;
      }
    }
    EXPECT_EQ(index.digests->all(), first);

    // A new process resuming a checkpoint that kept these digests, after slide 3 was changed.
    perturb_features(index.bags[3].path);
    index.digests = std::make_shared<SlideDigests>("train");
    index.digests->expect(first, "ckpt-3");
    auto shared_cache = cache == CacheMode::kNone ? nullptr : std::make_shared<BagCache>(cache);
    BagLoader loader(index, {"features", 2, CacheMode::kNone, false}, shared_cache);
    loader.start(all);
    for (int i = 0; i < 3; ++i) EXPECT_NO_THROW(loader.next());
    EXPECT_TRUE(test::throws_error_naming(
        [&] { loader.next(); },
        {index.bags[3].path, "slide " + index.bags[3].slide_id, "changed since checkpoint ckpt-3 was written"}));
    if (shared_cache) {
      EXPECT_FALSE(shared_cache->contains(index.bags[3].path));
    }
  }
}

}  // namespace
}  // namespace mil
