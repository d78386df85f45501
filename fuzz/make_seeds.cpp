// Seed inputs made by the project's own writers (so they are valid by construction), plus truncated and
// bit-flipped copies of the binary ones. Run once to (re)make tests/fuzz/corpus/*/seed-*; regression inputs
// (crash-*) are added by hand next to them.
#include <torch/torch.h>

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "fuzz/fuzz_checkpoint.hpp"
#include "fuzz/fuzz_support.hpp"
#include "mil/io/h5_reader.hpp"
#include "mil/io/torch_archive.hpp"
#include "mil/model/dsmil.hpp"
#include "mil/model/state_dict.hpp"

namespace mil::fuzz {
namespace {

namespace fs = std::filesystem;

std::string slurp(const fs::path& file) {
  std::ifstream in(file, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

void put(const fs::path& file, const std::string& bytes) {
  fs::create_directories(file.parent_path());
  std::ofstream(file, std::ios::binary | std::ios::trunc) << bytes;
}

// The seed, its first half and a copy with three bits flipped (fixed positions from a fixed xorshift).
void put_damaged(const fs::path& dir, const std::string& name, const std::string& bytes) {
  put(dir / ("seed-" + name), bytes);
  put(dir / ("seed-" + name + ".truncated"), bytes.substr(0, bytes.size() / 2));
  std::string flipped = bytes;
  uint64_t x = 0x9e3779b97f4a7c15ull ^ bytes.size();
  for (int i = 0; i < 3 && !flipped.empty(); ++i) {
    x ^= x << 13, x ^= x >> 7, x ^= x << 17;
    flipped[x % flipped.size()] ^= static_cast<char>(1u << (x >> 60) % 8);
  }
  put(dir / ("seed-" + name + ".flipped"), flipped);
}

DsmilNet small_model(bool passing_v) {
  ModelConfig cfg;
  cfg.feature_dim = 4;
  cfg.num_classes = 2;
  cfg.nonlinear_q = false;
  cfg.passing_v = passing_v;
  torch::manual_seed(0);
  return DsmilNet(cfg);
}

void torch_archive_seeds(const fs::path& dir, const fs::path& scratch) {
  save_model((scratch / "model.pt").string(), *small_model(true), {{"thresholds", {0.5, 0.5}}});
  put(dir / "seed-model.pt", slurp(scratch / "model.pt"));
  write_state_dict((scratch / "weights.pth").string(), state_dict_of(*small_model(false)));
  put_damaged(dir, "state_dict.pth", slurp(scratch / "weights.pth"));
}

void checkpoint_seeds(const fs::path& dir) {
  DsmilNet model = small_model(false);
  JobProgress progress;
  progress.sequence = 3;
  FinishedRun done;
  done.fold = 0;
  done.weights = state_dict_of(*model);
  done.thresholds = {0.5, 0.5};
  done.val_loss = 0.25;
  done.val_probs = {{0.1, 0.9}};
  progress.finished.push_back(done);
  RunProgress current;
  current.fold = 1;
  current.epoch = 2;
  current.step = 1;
  current.bag_stats = {0.5, 3};
  current.weights = state_dict_of(*model);
  current.best_weights = state_dict_of(*model);
  current.feature_mean = torch::zeros({4});
  current.feature_std = torch::ones({4});
  current.optimizer = "optimizer bytes";
  progress.current = current;
  progress.total_epochs_planned = 4;
  progress.epochs_done = 3;
  const auto files = encode_checkpoint(progress, checkpoint_identity());
  const std::string joined = join_files({files.at("state.json"), files.at("tensors.pt"), files.at("optimizer.pt")});
  put(dir / "seed-checkpoint", joined);
  put(dir / "seed-state-only", files.at("state.json"));
}

void h5_seeds(const fs::path& dir, const fs::path& scratch) {
  {
    io::H5Writer w((scratch / "contiguous.h5").string());
    w.write("features", torch::arange(12, torch::kFloat).reshape({4, 3}));
  }
  put_damaged(dir, "contiguous.h5", slurp(scratch / "contiguous.h5"));
  {
    io::H5Writer w((scratch / "chunked.h5").string());
    w.write_appended("features", torch::arange(10, torch::kFloat).reshape({5, 2}).to(torch::kHalf), 1, 2);
    w.write("coords", torch::arange(10, torch::kLong).reshape({5, 2}));
  }
  put_damaged(dir, "chunked.h5", slurp(scratch / "chunked.h5"));
}

void text_seeds(const fs::path& root) {
  put(root / "csv" / "seed-labels.csv", "slide_id,label\r\nslide_1,tumor\r\n\"slide,2\",\"nor\"\"mal\"\r\n");
  put(root / "csv" / "seed-bom.csv", "\xEF\xBB\xBFslide_id,label,fold\nA,0,1\n\nB, 1 ,2\n");
  put(root / "csv" / "seed-splits.csv", ",train,val,test\n0,slide_1,A,B\n1,\"slide,2\",NaN,\n");
  put(root / "csv" / "seed-numeric-labels.csv", "slide_id,label\nA,0\nB,3\nslide_1,1\n");
  put(root / "hyperparameters" / "seed-hyperparameters.json",
      R"({"epochs": "3", "lr": "0.0002", "average": "True", "feature_dim": "\"512\"", "sagemaker_program": "x"})");
  put(root / "hyperparameters" / "seed-config.json",
      R"({"epochs": 3, "weight-decay": 1e-4, "on_bad_slide": "skip", "seed": 7})");
  put(root / "resourceconfig" / "seed-resourceconfig.json",
      R"({"current_host": "algo-1", "hosts": ["algo-1", "algo-2"], "network_interface_name": "eth0"})");
  put(root / "resourceconfig" / "seed-inputdataconfig.json",
      R"({"train": {"TrainingInputMode": "File", "S3DistributionType": "ShardedByS3Key"}})");
}

}  // namespace

void make_seeds(const fs::path& root) {
  TempDir scratch;
  text_seeds(root);
  torch_archive_seeds(root / "torch_archive", scratch.path());
  checkpoint_seeds(root / "checkpoint");
  h5_seeds(root / "h5", scratch.path());
}

}  // namespace mil::fuzz
