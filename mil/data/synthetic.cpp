#include "mil/data/synthetic.hpp"

#include <ATen/CPUGeneratorImpl.h>
#include <torch/torch.h>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>

#include "mil/io/csv.hpp"
#include "mil/io/files.hpp"
#include "mil/io/h5_reader.hpp"
#include "mil/util/error.hpp"

namespace mil {

void write_synthetic_channel(const std::string& dir, const SyntheticOptions& o) {
  if (o.num_bags < 1 || o.feature_dim < 1 || o.num_classes < 1) throw Error("synthetic data: bad options");
  io::ensure_dir(dir, "the synthetic channel");
  // One unit direction per class: witnesses of class c are background + signal * direction_c.
  at::Generator direction_gen = at::detail::createCPUGenerator(o.direction_seed);
  torch::Tensor directions = torch::randn({o.num_classes, o.feature_dim}, direction_gen);
  at::Generator gen = at::detail::createCPUGenerator(o.seed);
  directions = directions / directions.norm(2, 1, true);

  std::ofstream labels(dir + "/labels.csv");
  labels << "slide_id,label\n";
  for (int64_t b = 0; b < o.num_bags; ++b) {
    char id[64];
    std::snprintf(id, sizeof(id), "%s%04lld", o.prefix.c_str(), static_cast<long long>(b));

    const double log_n = o.log_mean_instances + o.log_sigma_instances * torch::randn({1}, gen).item<double>();
    const int64_t n = std::clamp<int64_t>(std::llround(std::exp(log_n)), o.min_instances, o.max_instances);
    // Alternate classes so every class is represented evenly whatever the bag count.
    const int64_t label = o.num_classes == 1 ? b % 2 : b % o.num_classes;
    const bool positive = o.num_classes > 1 || label == 1;
    const int64_t cls = o.num_classes == 1 ? 0 : label;

    torch::Tensor feats = torch::randn({n, o.feature_dim}, gen);
    if (positive) {
      const int64_t witnesses = std::max<int64_t>(1, std::llround(o.witness_fraction * n));
      const torch::Tensor rows = torch::randperm(n, gen, torch::kLong).slice(0, 0, witnesses);
      feats.index_add_(0, rows, (o.signal * directions[cls]).expand({witnesses, o.feature_dim}).contiguous());
    }

    io::H5Writer file(dir + "/" + id + ".h5");
    const auto write = [&](const std::string& name, const torch::Tensor& t) {
      if (o.chunk_rows > 0) {
        file.write_appended(name, t, o.chunk_rows, o.append_rows);
      } else {
        file.write(name, t);
      }
    };
    write("features", o.float16 ? feats.to(torch::kHalf) : feats);
    if (o.coords) {
      const int64_t side = static_cast<int64_t>(std::ceil(std::sqrt(static_cast<double>(n)))) + 1;
      const torch::Tensor cells = torch::randperm(side * side, gen, torch::kLong).slice(0, 0, n);
      write("coords", torch::stack({cells.remainder(side), cells.div(side, "floor")}, 1) * 256);
    }
    labels << io::csv_field(id) << "," << label << "\n";
  }
  if (!labels) throw Error(dir + "/labels.csv", "", "write failed");
}

}  // namespace mil
