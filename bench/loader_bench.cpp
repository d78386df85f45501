// dsmil_bench_loader: how fast the bag pipeline feeds the trainer, as ratios measured in one run.
//   1. loader throughput vs a raw sequential read of the same files (target: ratio >= 0.8);
//   2. the same slides in CLAM's extractor layout (one HDF5 chunk per instance): the loader's throughput
//      vs on the contiguous files (target ~1), and HDF5's own whole-dataset read of them for scale;
//   3. a training epoch reading from disk (both layouts) vs the same epoch from the RAM cache, float32 and
//      float16 (target: ratio <= 1.1, i.e. prefetch hides the I/O behind compute);
//   4. the slide digest (XXH3 of the values as stored, which read_bag computes for the checkpoints' data
//      check): its CPU per bag next to the loader's whole CPU per bag (target: a small fraction);
//   5. the process's peak resident memory.
// With --drop-caches (root), the page cache is dropped before each disk pass so "disk" means the device.
#include <H5Cpp.h>
#include <spdlog/spdlog.h>
#include <sys/resource.h>

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
#include "mil/data/slide_digests.hpp"
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

// HDF5's own read of every file's features (H5Dread of the whole dataset, default file access): what a
// reader that does not special-case chunked files gets.
double hdf5_read_seconds(const mil::BagIndex& index) {
  const Clock::time_point t0 = Clock::now();
  std::vector<float> buffer;
  for (const auto& bag : index.bags) {
    H5::H5File file(bag.path, H5F_ACC_RDONLY);
    H5::DataSet ds = file.openDataSet("features");
    buffer.resize(static_cast<size_t>(bag.num_instances * bag.feature_dim));
    ds.read(buffer.data(), H5::PredType::NATIVE_FLOAT);
  }
  return seconds_since(t0);
}

// Peak resident memory of this process so far (VmHWM), in MB.
double peak_rss_mb() {
  std::ifstream status("/proc/self/status");
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind("VmHWM:", 0) == 0) return std::stod(line.substr(6)) / 1024;
  }
  return 0;
}

// CPU seconds used by the whole process (every thread) so far: unlike wall time, barely moved by other
// processes sharing the cores.
double cpu_seconds() {
  rusage u{};
  ::getrusage(RUSAGE_SELF, &u);
  return static_cast<double>(u.ru_utime.tv_sec + u.ru_stime.tv_sec) +
         static_cast<double>(u.ru_utime.tv_usec + u.ru_stime.tv_usec) / 1e6;
}

double loader_seconds(const mil::BagIndex& index, double* cpu = nullptr) {
  mil::BagLoader loader(index, {"features", 4, mil::CacheMode::kNone, false});
  std::vector<int64_t> order(index.bags.size());
  std::iota(order.begin(), order.end(), 0);
  const Clock::time_point t0 = Clock::now();
  const double c0 = cpu_seconds();
  loader.start(order);
  double sink = 0;
  for (size_t i = 0; i < order.size(); ++i) sink += loader.next().features[0][0].item<float>();
  const double s = seconds_since(t0);
  if (cpu != nullptr) *cpu = cpu_seconds() - c0;
  if (sink == 12345.678) std::puts("");  // keep the reads observable
  return s;
}

// CPU seconds of digesting every bag's features once (they are in memory: the hash alone, as read_bag pays it
// on bytes it has just read).
double digest_cpu_seconds(const mil::BagIndex& index) {
  std::vector<torch::Tensor> features;
  for (size_t i = 0; i < index.bags.size(); ++i) {
    features.push_back(mil::read_bag(index.bags[i], static_cast<int64_t>(i), "features", false).features);
  }
  uint64_t sink = 0;
  const double c0 = cpu_seconds();
  for (const torch::Tensor& f : features) sink ^= mil::feature_digest(f.data_ptr(), f.nbytes());
  const double cpu = cpu_seconds() - c0;
  if (sink == 12345) std::puts("");  // keep the digests observable
  return cpu;
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

mil::BagIndex write_and_index(const std::string& dir, const mil::SyntheticOptions& data) {
  std::filesystem::remove_all(dir);
  mil::write_synthetic_channel(dir, data);
  const mil::LabelTable labels = mil::read_label_csv(dir + "/labels.csv");
  const mil::ClassMap classes = mil::ClassMap::infer(labels.labels, 0, "", labels.path);
  return mil::index_channel(dir, &labels, &classes, {});
}

double size_gb(const mil::BagIndex& index) {
  uintmax_t bytes = 0;
  for (const auto& b : index.bags) bytes += std::filesystem::file_size(b.path);
  return static_cast<double>(bytes) / 1e9;
}

struct Figures {
  std::vector<double> raw, loaded, clam_loaded, clam_hdf5;               // seconds per pass
  std::vector<double> loaded_cpu, clam_cpu, clam_hdf5_cpu, digest_cpu;   // CPU seconds per pass
  std::vector<double> disk_epoch, clam_epoch, ram32_epoch, ram16_epoch;  // seconds per epoch
  int64_t ram32_bytes = 0, ram16_bytes = 0;
};

Figures measure(const mil::BagIndex& index, const mil::BagIndex& clam, int64_t dim, int repeats, bool drop_caches,
                bool* dropped) {
  Figures f;
  std::vector<char> buffer(8 << 20);
  const auto drop = [&] {
    if (drop_caches) *dropped = drop_page_cache();
  };
  for (int r = 0; r < repeats; ++r) {
    drop();
    f.raw.push_back(raw_read_seconds(index, buffer));
    drop();
    double cpu = 0;
    f.loaded.push_back(loader_seconds(index, &cpu));
    f.loaded_cpu.push_back(cpu);
    drop();
    f.clam_loaded.push_back(loader_seconds(clam, &cpu));
    f.clam_cpu.push_back(cpu);
    drop();
    const double c0 = cpu_seconds();
    f.clam_hdf5.push_back(hdf5_read_seconds(clam));
    f.clam_hdf5_cpu.push_back(cpu_seconds() - c0);
    f.digest_cpu.push_back(digest_cpu_seconds(index));
  }
  mil::ModelConfig mc;
  mc.feature_dim = dim;
  mil::DsmilNet net(mc);
  net->init_orthogonal(1);
  auto opt = mil::make_adam(net->parameters(), {});
  mil::BagLoader disk(index, {"features", 4, mil::CacheMode::kNone, false});
  mil::BagLoader clam_disk(clam, {"features", 4, mil::CacheMode::kNone, false});
  mil::BagLoader ram32(index, {"features", 4, mil::CacheMode::kFloat32, false});
  mil::BagLoader ram16(index, {"features", 4, mil::CacheMode::kFloat16, false});
  epoch_seconds(ram32, index, *net, *opt);  // fill the caches (and warm up libtorch)
  epoch_seconds(ram16, index, *net, *opt);
  for (int r = 0; r < repeats; ++r) {
    drop();
    f.disk_epoch.push_back(epoch_seconds(disk, index, *net, *opt));
    drop();
    f.clam_epoch.push_back(epoch_seconds(clam_disk, clam, *net, *opt));
    f.ram32_epoch.push_back(epoch_seconds(ram32, index, *net, *opt));
    f.ram16_epoch.push_back(epoch_seconds(ram16, index, *net, *opt));
  }
  f.ram32_bytes = ram32.cache_bytes();
  f.ram16_bytes = ram16.cache_bytes();
  return f;
}

void print(const Figures& f, const mil::BagIndex& index, double gb, const mil::SyntheticOptions& data, int threads,
           const std::string& page_cache) {
  std::printf(
      "# dsmil_bench_loader: %lld bags, %lld instances, D = %lld, %s, %.3f GB on disk, %d thread(s), page cache "
      "%s\n",
      static_cast<long long>(index.bags.size()), static_cast<long long>(index.total_instances()),
      static_cast<long long>(data.feature_dim), data.float16 ? "float16" : "float32", gb, threads, page_cache.c_str());
  const double raw_gbs = gb / median(f.raw);
  const double loader_gbs = gb / median(f.loaded);
  const double clam_gbs = gb / median(f.clam_loaded);
  std::printf("| figure | value | target |\n| --- | --- | --- |\n");
  std::printf("| raw sequential read | %.2f GB/s | |\n", raw_gbs);
  std::printf("| loader (HDF5 + float32 + NaN check, prefetch 4) | %.2f GB/s | |\n", loader_gbs);
  std::printf("| loader / raw | %.2f | >= 0.8 |\n", loader_gbs / raw_gbs);
  std::printf("| loader, CLAM layout (one chunk per instance) | %.2f GB/s | |\n", clam_gbs);
  std::printf("| HDF5's own read (H5Dread), CLAM layout | %.2f GB/s | |\n", gb / median(f.clam_hdf5));
  std::printf("| loader CLAM / loader contiguous | %.2f | ~1 |\n", clam_gbs / loader_gbs);
  const double per_bag = 1e3 / static_cast<double>(index.bags.size());
  std::printf("| CPU per bag: loader contiguous / loader CLAM / HDF5's read CLAM | %.2f / %.2f / %.2f ms | |\n",
              median(f.loaded_cpu) * per_bag, median(f.clam_cpu) * per_bag, median(f.clam_hdf5_cpu) * per_bag);
  std::printf("| CPU per bag: slide digest (XXH3 of the stored values) | %.3f ms | |\n",
              median(f.digest_cpu) * per_bag);
  std::printf("| slide digest / loader CPU per bag, contiguous | %.3f | small |\n",
              median(f.digest_cpu) / median(f.loaded_cpu));
  std::printf("| training epoch from disk, contiguous | %.3f s | |\n", median(f.disk_epoch));
  std::printf("| training epoch from disk, CLAM layout | %.3f s | |\n", median(f.clam_epoch));
  std::printf("| training epoch from RAM cache, float32 (ram32) | %.3f s | |\n", median(f.ram32_epoch));
  std::printf("| training epoch from RAM cache, float16 (ram) | %.3f s | |\n", median(f.ram16_epoch));
  std::printf("| disk epoch / float32-cached epoch | %.3f | <= 1.1 |\n", median(f.disk_epoch) / median(f.ram32_epoch));
  std::printf("| CLAM disk epoch / contiguous disk epoch | %.3f | ~1 |\n", median(f.clam_epoch) / median(f.disk_epoch));
  std::printf("| float16-cached epoch / float32-cached epoch | %.3f | ~1 |\n",
              median(f.ram16_epoch) / median(f.ram32_epoch));
  std::printf("| RAM cache size, float32 / float16 | %.1f / %.1f MB | |\n", static_cast<double>(f.ram32_bytes) / 1e6,
              static_cast<double>(f.ram16_bytes) / 1e6);
  std::printf("| peak resident memory (both caches full) | %.0f MB | |\n", peak_rss_mb());
}

}  // namespace

int main(int argc, char** argv) {
  mil::SyntheticOptions data;
  int repeats = 3;
  int threads = 0;
  bool drop_caches = false;
  std::string dir = "out/bench_loader";
  cxxopts::Options options("dsmil_bench_loader", "Bag pipeline throughput, as ratios measured in one run");
  options.add_options()("dir", "where the synthetic channels are written", cxxopts::value<std::string>(dir))(
      "bags", "slides", cxxopts::value<int64_t>(data.num_bags)->default_value("120"))(
      "dim", "feature dimension", cxxopts::value<int64_t>(data.feature_dim)->default_value("512"))(
      "log-mean", "mean log bag size", cxxopts::value<double>(data.log_mean_instances)->default_value("7.0"))(
      "float16", "store features as float16", cxxopts::value<bool>(data.float16)->default_value("false"))(
      "repeats", "measurements per figure (median reported)", cxxopts::value<int>(repeats)->default_value("3"))(
      "threads", "libtorch threads (0 = auto: the process's share of the cores)",
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
    const mil::BagIndex index = write_and_index(dir + "/contiguous", data);
    mil::SyntheticOptions clam_data = data;
    clam_data.chunk_rows = 1;  // CLAM's extractor: chunks of one instance, appended 256 at a time
    clam_data.append_rows = 256;
    const mil::BagIndex clam = write_and_index(dir + "/clam", clam_data);
    bool dropped = !drop_caches;
    const Figures f = measure(index, clam, data.feature_dim, repeats, drop_caches, &dropped);
    print(f, index, size_gb(index), data, used_threads,
          drop_caches ? (dropped ? "dropped before disk passes" : "NOT dropped (no permission)") : "warm");
    return 0;
  } catch (const std::exception& e) {
    return mil::report_failure("dsmil_bench_loader", e, "");
  }
}
