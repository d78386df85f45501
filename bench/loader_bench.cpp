// dsmil_bench_loader: how fast the bag pipeline feeds the trainer, as ratios measured in one run.
//   1. loader throughput vs a raw sequential read of the same files (target: ratio >= 0.8);
//   2. a training epoch reading from disk vs the same epoch from the RAM cache (target: ratio <= 1.1,
//      i.e. prefetch hides the I/O behind compute).
// With --drop-caches (root), the page cache is dropped before each disk pass so "disk" means the device.
#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cxxopts.hpp>
#include <filesystem>
#include <fstream>
#include <numeric>
#include <vector>

#include "bench/timing.hpp"
#include "mil/data/bag_loader.hpp"
#include "mil/data/synthetic.hpp"
#include "mil/model/loss.hpp"
#include "mil/train/optimizer.hpp"
#include "mil/util/logging.hpp"
#include "mil/util/threads.hpp"

namespace {

using mil::bench::Clock;
using mil::bench::median;
using mil::bench::seconds_since;

bool drop_page_cache() {
  std::fflush(nullptr);
  ::sync();
  std::ofstream f("/proc/sys/vm/drop_caches");
  f << "3\n";
  return static_cast<bool>(f);
}

// Reads every file front to back into one reused buffer: the I/O ceiling for these files.
double raw_read_seconds(const mil::BagIndex& index, std::vector<char>& buffer) {
  const Clock::time_point t0 = Clock::now();
  for (const auto& bag : index.bags) {
    std::ifstream in(bag.path, std::ios::binary);
    while (in.read(buffer.data(), static_cast<std::streamsize>(buffer.size())) || in.gcount() > 0) {
    }
  }
  return seconds_since(t0);
}

double loader_seconds(const mil::BagIndex& index) {
  mil::BagLoader loader(index, {"features", 4, mil::CacheMode::kNone, false});
  std::vector<int64_t> order(index.bags.size());
  std::iota(order.begin(), order.end(), 0);
  const Clock::time_point t0 = Clock::now();
  loader.start(order);
  double sink = 0;
  for (size_t i = 0; i < order.size(); ++i) sink += loader.next().features[0][0].item<float>();
  const double s = seconds_since(t0);
  if (sink == 12345.678) std::puts("");  // keep the reads observable
  return s;
}

// One training epoch (forward, loss, backward, Adam step per bag) fed by `loader`.
double epoch_seconds(mil::BagLoader& loader, const mil::BagIndex& index, mil::DsmilNetImpl& net,
                     torch::optim::Adam& opt) {
  std::vector<int64_t> order(index.bags.size());
  std::iota(order.begin(), order.end(), 0);
  const Clock::time_point t0 = Clock::now();
  loader.start(order);
  for (size_t i = 0; i < order.size(); ++i) {
    const mil::Bag bag = loader.next();
    opt.zero_grad();
    const mil::DsmilOutput out = net.forward(bag.features);
    mil::dsmil_loss(out, torch::tensor(index.bags[static_cast<size_t>(bag.index)].target)).backward();
    opt.step();
  }
  return seconds_since(t0);
}

}  // namespace

int main(int argc, char** argv) {
  mil::SyntheticOptions data;
  int repeats = 3;
  int threads = 0;
  bool drop_caches = false;
  std::string dir = "out/bench_loader";
  cxxopts::Options options("dsmil_bench_loader", "Bag pipeline throughput, as ratios measured in one run");
  options.add_options()("dir", "where the synthetic channel is written", cxxopts::value<std::string>(dir))(
      "bags", "slides", cxxopts::value<int64_t>(data.num_bags)->default_value("120"))(
      "dim", "feature dimension", cxxopts::value<int64_t>(data.feature_dim)->default_value("512"))(
      "log-mean", "mean log bag size", cxxopts::value<double>(data.log_mean_instances)->default_value("7.0"))(
      "float16", "store features as float16", cxxopts::value<bool>(data.float16)->default_value("false"))(
      "repeats", "measurements per figure (median reported)", cxxopts::value<int>(repeats)->default_value("3"))(
      "threads", "libtorch threads (0 = auto: the process's share of the cores, 1 on a share of <= 2)",
      cxxopts::value<int>(threads)->default_value("0"))("drop-caches", "drop the page cache before disk passes (root)",
                                                        cxxopts::value<bool>(drop_caches)->default_value("false"))(
      "h,help", "print help");
  try {
    const auto args = options.parse(argc, argv);
    if (args.count("help")) {
      std::fputs(options.help().c_str(), stdout);
      return 0;
    }
    mil::setup_logging("warn");
    const int used_threads = mil::set_torch_threads(threads);
    data.log_sigma_instances = 0.5;
    std::filesystem::remove_all(dir);
    mil::write_synthetic_channel(dir, data);
    const mil::LabelTable labels = mil::read_label_csv(dir + "/labels.csv");
    const mil::ClassMap classes = mil::ClassMap::infer(labels.labels, 0, "", labels.path);
    const mil::BagIndex index = mil::index_channel(dir, &labels, &classes, {});
    uintmax_t bytes = 0;
    for (const auto& b : index.bags) bytes += std::filesystem::file_size(b.path);
    const double gb = static_cast<double>(bytes) / 1e9;

    bool dropped = !drop_caches;
    std::vector<char> buffer(8 << 20);
    std::vector<double> raw, loaded;
    for (int r = 0; r < repeats; ++r) {
      if (drop_caches) dropped = drop_page_cache();
      raw.push_back(raw_read_seconds(index, buffer));
      if (drop_caches) drop_page_cache();
      loaded.push_back(loader_seconds(index));
    }

    mil::ModelConfig mc;
    mc.feature_dim = data.feature_dim;
    mil::DsmilNet net(mc);
    net->init_orthogonal(1);
    auto opt = mil::make_adam(net->parameters(), {});
    mil::BagLoader disk(index, {"features", 4, mil::CacheMode::kNone, false});
    mil::BagLoader cached(index, {"features", 4, mil::CacheMode::kFloat32, false});
    epoch_seconds(cached, index, *net, *opt);  // fills the cache (and warms up libtorch)
    std::vector<double> disk_epoch, cache_epoch;
    for (int r = 0; r < repeats; ++r) {
      if (drop_caches) drop_page_cache();
      disk_epoch.push_back(epoch_seconds(disk, index, *net, *opt));
      cache_epoch.push_back(epoch_seconds(cached, index, *net, *opt));
    }

    const double raw_gbs = gb / median(raw);
    const double loader_gbs = gb / median(loaded);
    std::printf(
        "# dsmil_bench_loader: %lld bags, %lld instances, D = %lld, %s, %.3f GB on disk, %d thread(s), "
        "page cache %s\n",
        static_cast<long long>(index.bags.size()), static_cast<long long>(index.total_instances()),
        static_cast<long long>(data.feature_dim), data.float16 ? "float16" : "float32", gb, used_threads,
        drop_caches ? (dropped ? "dropped before disk passes" : "NOT dropped (no permission)") : "warm");
    std::printf("| figure | value | target |\n| --- | --- | --- |\n");
    std::printf("| raw sequential read | %.2f GB/s | |\n", raw_gbs);
    std::printf("| loader (HDF5 + float32 + NaN check, prefetch 4) | %.2f GB/s | |\n", loader_gbs);
    std::printf("| loader / raw | %.2f | >= 0.8 |\n", loader_gbs / raw_gbs);
    std::printf("| training epoch from disk | %.3f s | |\n", median(disk_epoch));
    std::printf("| training epoch from RAM cache | %.3f s | |\n", median(cache_epoch));
    std::printf("| disk epoch / cached epoch | %.3f | <= 1.1 |\n", median(disk_epoch) / median(cache_epoch));
    std::printf("| RAM cache size | %.1f MB | |\n", static_cast<double>(cached.cache_bytes()) / 1e6);
    return 0;
  } catch (const std::exception& e) {
    return mil::report_failure("dsmil_bench_loader", e, "");
  }
}
