#include "mil/data/bag_index.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <map>
#include <numeric>

#include "mil/io/h5_reader.hpp"
#include "mil/util/error.hpp"

namespace mil {
namespace fs = std::filesystem;
namespace {

constexpr size_t kProblemsInMessage = 10;

bool is_feature_file(const fs::path& p) {
  const std::string ext = p.extension().string();
  return ext == ".h5" || ext == ".hdf5";
}

// Why a dataset of this shape is too large to read (N x D x dtype size over `max_bytes`), or "". The
// product is formed without overflow: a hostile header may declare 2^63 instances.
std::string check_size(const io::H5DatasetInfo& info, int64_t max_bytes) {
  long double bytes = static_cast<long double>(info.type_size);
  for (int64_t d : info.shape) bytes *= static_cast<long double>(d);
  if (bytes <= static_cast<long double>(max_bytes)) return "";
  std::string shape;
  for (int64_t d : info.shape) shape += (shape.empty() ? "" : " x ") + std::to_string(d);
  char amount[64];
  std::snprintf(amount, sizeof(amount), "%.3Lg GB", bytes / 1e9L);
  return "declares " + shape + " " + info.dtype_name() + " = " + amount + ", over --max-bag-bytes " +
         std::to_string(max_bytes) + " (a corrupt header, or raise the limit)";
}

// Shape and dtype checks of one file; returns the reason it is unusable, or "" when it is fine.
std::string inspect(BagInfo* bag, const std::string& features_key, int64_t max_bytes) {
  try {
    io::H5Reader file(bag->path);
    if (!file.has(features_key)) return "no dataset '" + features_key + "'";
    const io::H5DatasetInfo info = file.info(features_key);
    bag->dtype = info.dtype_name();
    if (info.type_class != H5T_FLOAT || (info.type_size != 2 && info.type_size != 4 && info.type_size != 8)) {
      return "dataset '" + features_key + "' has unsupported dtype " + bag->dtype + " (need float16/32/64)";
    }
    if (info.shape.size() != 2) {
      return "dataset '" + features_key + "' has rank " + std::to_string(info.shape.size()) + ", need [N, D]";
    }
    bag->num_instances = info.shape[0];
    bag->feature_dim = info.shape[1];
    bag->chunk_rows = info.chunk.empty() ? 0 : info.chunk[0];
    if (bag->num_instances == 0) return "dataset '" + features_key + "' has zero instances";
    if (bag->feature_dim == 0) return "dataset '" + features_key + "' has zero features per instance";
    const std::string too_big = check_size(info, max_bytes);
    if (!too_big.empty()) return "dataset '" + features_key + "' " + too_big;
    if (file.has("coords")) {
      const io::H5DatasetInfo coords = file.info("coords");
      if (coords.shape.size() != 2 || coords.shape[0] != bag->num_instances || coords.shape[1] != 2) {
        std::string shape;
        for (auto d : coords.shape) shape += (shape.empty() ? "" : ", ") + std::to_string(d);
        return "dataset 'coords' has shape [" + shape + "], need [" + std::to_string(bag->num_instances) + ", 2]";
      }
      bag->has_coords = true;
    }
    return "";
  } catch (const Error& e) {
    return e.reason();
  }
}

}  // namespace

std::vector<int64_t> BagIndex::sizes() const {
  std::vector<int64_t> out;
  out.reserve(bags.size());
  for (const auto& b : bags) out.push_back(b.num_instances);
  return out;
}

int64_t BagIndex::total_instances() const {
  const auto s = sizes();
  return std::accumulate(s.begin(), s.end(), int64_t{0});
}

namespace {

using Problems = std::vector<std::pair<std::string, std::string>>;  // (slide or file, reason)

// The channel's feature files, by slide id (two files of one slide are a problem).
std::map<std::string, std::string> scan_channel(const std::string& dir, Problems& problems) {
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) throw Error(dir, "", "channel directory does not exist");
  std::map<std::string, std::string> files;
  for (auto it = fs::recursive_directory_iterator(dir, fs::directory_options::skip_permission_denied, ec);
       it != fs::recursive_directory_iterator(); it.increment(ec)) {
    if (ec) throw Error(dir, "", "cannot scan the channel: " + ec.message());
    if (!it->is_regular_file(ec) || !is_feature_file(it->path())) continue;
    const std::string id = it->path().stem().string();
    auto [pos, inserted] = files.emplace(id, it->path().string());
    if (!inserted) problems.emplace_back(id, "two files for one slide: " + pos->second + " and " + it->path().string());
  }
  if (files.empty()) throw Error(dir, "", "empty channel: no .h5 feature files found");
  return files;
}

// One feature dimension for the whole channel: the most common one; slides of another are problems.
void keep_common_dim(BagIndex& index, Problems& problems) {
  std::map<int64_t, int64_t> dim_count;
  for (const auto& b : index.bags) ++dim_count[b.feature_dim];
  if (dim_count.empty()) return;
  index.feature_dim =
      std::max_element(dim_count.begin(), dim_count.end(), [](auto& a, auto& b) { return a.second < b.second; })->first;
  std::vector<BagInfo> kept;
  for (auto& b : index.bags) {
    if (b.feature_dim == index.feature_dim) {
      kept.push_back(std::move(b));
    } else {
      problems.emplace_back(b.slide_id, b.path + ": D = " + std::to_string(b.feature_dim) +
                                            ", but the other slides have D = " + std::to_string(index.feature_dim));
    }
  }
  index.bags = std::move(kept);
}

// Every problem logged; then one mil::Error listing them, or in skip mode the slides left out.
void report_problems(const std::string& dir, const IndexOptions& options, Problems& problems, BagIndex& index) {
  if (problems.empty()) return;
  std::stable_sort(problems.begin(), problems.end(), [](auto& a, auto& b) { return a.first < b.first; });
  for (const auto& [slide, why] : problems) {
    if (options.skip_bad_slides) {
      spdlog::warn("[data] skipping slide {}: {}", slide, why);
    } else {
      spdlog::error("[data] bad slide {}: {}", slide, why);
    }
    index.skipped.push_back(slide + ": " + why);
  }
  if (!options.skip_bad_slides) {
    std::string msg = std::to_string(problems.size()) + " bad slide(s)";
    for (size_t i = 0; i < problems.size() && i < kProblemsInMessage; ++i) {
      msg += (i ? "; " : ": ") + problems[i].first + ": " + problems[i].second;
    }
    if (problems.size() > kProblemsInMessage) {
      msg += "; and " + std::to_string(problems.size() - kProblemsInMessage) + " more (see the log)";
    }
    throw Error(dir, "", msg + " (--on-bad-slide skip leaves them out)");
  }
  spdlog::warn("[data] {}: skipped {} bad slide(s), {} remain", dir, problems.size(), index.bags.size());
}

}  // namespace

BagIndex index_channel(const std::string& dir, const LabelTable* labels, const ClassMap* classes,
                       const IndexOptions& options) {
  Problems problems;
  const std::map<std::string, std::string> files = scan_channel(dir, problems);
  BagIndex index;
  index.channel = dir;

  std::map<std::string, std::string> label_of;
  if (labels != nullptr) {
    for (size_t i = 0; i < labels->slide_ids.size(); ++i) label_of[labels->slide_ids[i]] = labels->labels[i];
    for (const auto& [id, label] : label_of) {
      if (files.count(id) == 0) problems.emplace_back(id, "listed in " + labels->path + " but has no .h5 file");
    }
  }
  for (const auto& [id, path] : files) {
    BagInfo bag;
    bag.slide_id = id;
    bag.path = path;
    if (labels != nullptr) {
      auto it = label_of.find(id);
      if (it == label_of.end()) {
        problems.emplace_back(id, path + " has no label in " + labels->path);
        continue;
      }
      bag.label = it->second;
      if (classes != nullptr) {
        try {
          bag.target = classes->target(bag.label, labels->path, id);
        } catch (const Error& e) {
          problems.emplace_back(id, e.reason());
          continue;
        }
      }
    }
    const std::string why = inspect(&bag, options.features_key, options.max_bag_bytes);
    if (!why.empty()) {
      problems.emplace_back(id, path + ": " + why);
      continue;
    }
    index.bags.push_back(std::move(bag));
  }
  keep_common_dim(index, problems);
  report_problems(dir, options, problems, index);
  if (index.bags.empty()) throw Error(dir, "", "no usable slides left in the channel");
  return index;
}

}  // namespace mil
