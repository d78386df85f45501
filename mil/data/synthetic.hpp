#pragma once
// A WSI-like synthetic channel for smoke tests, unit tests and benchmarks: bags of lognormal size with
// Gaussian "background" instances; positive bags hide a few witness instances shifted along their class's
// direction, so instance-level evidence decides the bag label, as in tumour detection.
#include <cstdint>
#include <string>

namespace mil {

struct SyntheticOptions {
  int64_t num_bags = 60;
  int64_t feature_dim = 64;
  int64_t num_classes = 1;          // 1: labels 0/1; C > 1: labels 0..C-1, one class per bag
  double log_mean_instances = 4.5;  // bag size ~ round(exp(N(log_mean, log_sigma))), clamped below
  double log_sigma_instances = 0.7;
  int64_t min_instances = 4;
  int64_t max_instances = 20000;
  double witness_fraction = 0.1;  // of a positive bag's instances (at least 1)
  double signal = 4.0;            // witness shift, in units of the background standard deviation
  bool float16 = false;           // store features as float16 (as several foundation-model pipelines do)
  bool coords = true;             // write CLAM-style `coords` [N, 2] (level-0 pixel grid, 256 px patches)
  // File layout. 0: contiguous datasets. k > 0: CLAM's extractor layout, chunks of (k, D), an unlimited first
  // dimension, appended `append_rows` rows at a time (CLAM writes chunks of one instance, batches of 256).
  int64_t chunk_rows = 0;
  int64_t append_rows = 256;
  uint64_t seed = 0;              // bag sizes, instances, witnesses
  uint64_t direction_seed = 0;    // the class directions: channels sharing it hold the same task
  std::string prefix = "slide_";  // slide ids are prefix + 4-digit number
};

// Writes <dir>/<slide>.h5 files and <dir>/labels.csv (dir is created). Deterministic given the options.
void write_synthetic_channel(const std::string& dir, const SyntheticOptions& options);

}  // namespace mil
