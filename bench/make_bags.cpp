// dsmil_make_bags: writes a synthetic WSI-like channel (per-slide .h5 files + labels.csv) for the smoke
// test, benchmarks and demos. See mil/data/synthetic.hpp for the model of the data.
#include <cstdio>
#include <cxxopts.hpp>

#include "mil/data/synthetic.hpp"
#include "mil/util/error.hpp"
#include "mil/util/logging.hpp"

int main(int argc, char** argv) {
  mil::SyntheticOptions o;
  cxxopts::Options options("dsmil_make_bags", "Write a synthetic channel of MIL bags");
  options.add_options()("out", "output directory", cxxopts::value<std::string>())(
      "bags", "number of slides", cxxopts::value<int64_t>(o.num_bags)->default_value("60"))(
      "dim", "feature dimension D", cxxopts::value<int64_t>(o.feature_dim)->default_value("64"))(
      "classes", "number of classes C (1 = binary)", cxxopts::value<int64_t>(o.num_classes)->default_value("1"))(
      "log-mean", "mean of log(bag size)", cxxopts::value<double>(o.log_mean_instances)->default_value("4.5"))(
      "log-sigma", "std of log(bag size)", cxxopts::value<double>(o.log_sigma_instances)->default_value("0.7"))(
      "witness-fraction", "fraction of witness instances in positive bags",
      cxxopts::value<double>(o.witness_fraction)->default_value("0.1"))(
      "signal", "witness shift in background std units", cxxopts::value<double>(o.signal)->default_value("4.0"))(
      "min-instances", "smallest bag", cxxopts::value<int64_t>(o.min_instances)->default_value("4"))(
      "max-instances", "largest bag", cxxopts::value<int64_t>(o.max_instances)->default_value("20000"))(
      "float16", "store features as float16", cxxopts::value<bool>(o.float16)->default_value("false"))(
      "layout",
      "contiguous, or clam: CLAM's extractor layout (chunks of one instance, unlimited first dimension, "
      "appended in batches of 256)",
      cxxopts::value<std::string>()->default_value("contiguous"))("seed", "random seed of the bags",
                                                                  cxxopts::value<uint64_t>(o.seed)->default_value("0"))(
      "task-seed", "random seed of the class directions (channels sharing it hold the same task)",
      cxxopts::value<uint64_t>(o.direction_seed)->default_value("0"))(
      "prefix", "slide id prefix", cxxopts::value<std::string>(o.prefix)->default_value("slide_"))("h,help",
                                                                                                   "print help");
  try {
    const auto result = options.parse(argc, argv);
    if (result.count("help") || !result.count("out")) {
      std::fputs(options.help().c_str(), result.count("help") ? stdout : stderr);
      return result.count("help") ? 0 : 2;
    }
    const std::string layout = result["layout"].as<std::string>();
    if (layout == "clam") {
      o.chunk_rows = 1;
      o.append_rows = 256;
    } else if (layout != "contiguous") {
      throw mil::Error("", "--layout", "unknown value '" + layout + "' (contiguous, clam)");
    }
    mil::write_synthetic_channel(result["out"].as<std::string>(), o);
    return 0;
  } catch (const std::exception& e) {
    return mil::report_failure("dsmil_make_bags", e, "");
  }
}
