#pragma once
// The index of a channel: every slide's file, shape and target, built from HDF5 headers only (no feature
// data is read), so start-up on thousands of slides takes seconds.
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "mil/data/labels.hpp"

namespace mil {

class SlideDigests;

struct BagInfo {
  std::string slide_id;  // the file stem
  std::string path;
  int64_t num_instances = 0;  // N
  int64_t feature_dim = 0;    // D
  std::string dtype;          // of the features dataset: float16, float32 or float64
  bool has_coords = false;    // a `coords` [N, 2] dataset is present
  int64_t chunk_rows = 0;     // rows per HDF5 chunk of the features (CLAM's extractor: 1); 0 = not chunked
  std::string label;          // raw label value; empty when the channel has no labels
  std::vector<float> target;  // C bits; empty when the channel has no labels
};

// The largest feature dataset a slide may declare, in bytes (N x D x dtype size): 16 GiB, over ten times a
// large slide (200,000 patches x 2,560 float32 features = 2 GB). A header declaring more (a corrupt or
// hostile file: 10^12 x 64 fits in a 1.4 kB chunked file) is a bad slide, named at index time, instead of
// an allocation failure mid-training.
inline constexpr int64_t kDefaultMaxBagBytes = int64_t{16} << 30;

struct IndexOptions {
  std::string features_key = "features";        // dataset holding [N, D]
  bool skip_bad_slides = false;                 // --on-bad-slide skip: leave bad slides out (logged) instead of failing
  int64_t max_bag_bytes = kDefaultMaxBagBytes;  // --max-bag-bytes: a larger N x D x dtype size is a bad slide
};

struct BagIndex {
  std::string channel;
  std::vector<BagInfo> bags;  // sorted by slide id, so the order never depends on the filesystem
  int64_t feature_dim = 0;
  std::vector<std::string> skipped;  // "slide: reason" for every slide left out (skip mode)
  // Where loaders record (and check) the digest of each slide's values as they read it; shared by every subset
  // of the channel. Null: not tracked (dsmil_eval, the test set).
  std::shared_ptr<SlideDigests> digests;

  std::vector<int64_t> sizes() const;  // instances per bag
  int64_t total_instances() const;
};

// Scans `dir` recursively for *.h5 / *.hdf5 files (CLAM's h5_files/ layout included). With `labels`,
// every file must have a label and every labelled slide a file; `classes` turns labels into targets.
// All problems are collected and reported together in one mil::Error (or, in skip mode, logged and the
// slides left out). An empty channel is always an error.
BagIndex index_channel(const std::string& dir, const LabelTable* labels, const ClassMap* classes,
                       const IndexOptions& options);

}  // namespace mil
