// Changed data never resumes silently: a job interrupted, then restarted after one slide's feature values
// changed under the same id and shape (a re-extraction, a file overwritten), stops with an error naming the
// slide and its file; with the data unchanged it resumes to the uninterrupted model, bit for bit. Covered for
// contiguous float32 files read from disk and for CLAM-layout float16 files through the float16 RAM cache.
#include <H5Cpp.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <nlohmann/json.hpp>

#include "mil/data/synthetic.hpp"
#include "mil/dist/communicator.hpp"
#include "mil/io/files.hpp"
#include "mil/train/checkpoint_state.hpp"
#include "mil/train/checkpoint_store.hpp"
#include "mil/train/trainer.hpp"
#include "mil/util/error.hpp"
#include "tests/test_util.hpp"

namespace mil {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

struct Variant {
  const char* name;
  bool clam_float16;  // CLAM's one-chunk-per-instance layout, float16 values, --cache ram
};

void PrintTo(const Variant& v, std::ostream* os) {
  *os << v.name;
}

class ResumeDigests : public ::testing::TestWithParam<Variant> {
 protected:
  void SetUp() override {
    SyntheticOptions o;
    o.num_bags = 20;
    o.feature_dim = 8;
    o.log_mean_instances = 2.5;
    o.seed = 4;
    o.direction_seed = 3;
    if (GetParam().clam_float16) {
      o.chunk_rows = 1;
      o.float16 = true;
    }
    write_synthetic_channel(dir_.file("data"), o);
    TrainConfig cfg = config("ref");
    LocalCommunicator comm;
    run_training(cfg, comm);
  }

  // Two epochs of 16 training slides (4 validate), a checkpoint every 4 steps, every one kept.
  TrainConfig config(const std::string& name) const {
    TrainConfig cfg;
    cfg.train_dir = dir_.file(name == "ref" ? "data" : name + "/data");
    cfg.labels = cfg.train_dir + "/labels.csv";
    cfg.model_dir = dir_.file(name + "/model");
    cfg.output_dir = dir_.file(name + "/output");
    cfg.checkpoint_dir = dir_.file(name + "/checkpoints");
    cfg.checkpoint_every_steps = 4;
    cfg.checkpoint_every_seconds = 0;
    cfg.keep_checkpoints = 1000;
    cfg.epochs = 2;
    cfg.lr = 1e-3;
    cfg.val_fraction = 0.2;
    cfg.cache = GetParam().clam_float16 ? "ram" : "none";
    cfg.log_level = "warn";
    return cfg;
  }

  // A job `name` about to restart from the reference's checkpoint `ckpt` (its own copy of the data).
  TrainConfig interrupted_at(const std::string& name, const std::string& ckpt) const {
    const TrainConfig cfg = config(name);
    fs::create_directories(cfg.checkpoint_dir);
    fs::copy(ckpt, cfg.checkpoint_dir + "/" + fs::path(ckpt).filename().string(), fs::copy_options::recursive);
    fs::copy(dir_.file("data"), cfg.train_dir, fs::copy_options::recursive);
    return cfg;
  }

  std::vector<std::string> checkpoints() const { return CheckpointStore(dir_.file("ref/checkpoints"), 1000).list(); }

  test::TempDir dir_;
};

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

TEST_P(ResumeDigests, UnchangedDataResumesToTheSameModel) {
  const std::vector<std::string> all = checkpoints();  // newest first; the last is epoch 1 step 4
  ASSERT_GE(all.size(), 4u);
  const json state = json::parse(io::read_file(all.back() + "/state.json"));
  ASSERT_TRUE(state.contains("slide_digests"));
  EXPECT_GE(state["slide_digests"]["train"].size(), 4u);  // at least the 4 slides trained so far
  // Mid epoch 1 (its slides partly read), and the end of epoch 1 (the first checkpoint with step 0).
  std::string epoch_end;
  for (const std::string& c : all) {
    const json current = json::parse(io::read_file(c + "/state.json"))["current"];
    if (!current.is_null() && current["epoch"] == 1 && current["step"] == 0) epoch_end = c;
  }
  ASSERT_FALSE(epoch_end.empty());
  for (const std::string& ckpt : {all.back(), epoch_end}) {
    SCOPED_TRACE(ckpt);
    fs::remove_all(dir_.file("resumed"));
    const TrainConfig cfg = interrupted_at("resumed", ckpt);
    LocalCommunicator comm;
    run_training(cfg, comm);
    EXPECT_EQ(io::read_file(cfg.model_dir + "/model.pt"), io::read_file(dir_.file("ref/model/model.pt")));
  }
}

TEST_P(ResumeDigests, ASlideWhoseValuesChangedIsNamedOnResume) {
  const std::vector<std::string> all = checkpoints();
  const std::string ckpt = all.back();  // epoch 1 step 4: the slides read so far are in its digests
  const json state = json::parse(io::read_file(ckpt + "/state.json"));
  ASSERT_FALSE(state["slide_digests"]["train"].empty());
  const std::string slide = state["slide_digests"]["train"].begin().key();
  const TrainConfig cfg = interrupted_at("changed", ckpt);
  const std::string file = cfg.train_dir + "/" + slide + ".h5";
  perturb_features(file);
  LocalCommunicator comm;
  EXPECT_TRUE(test::throws_error_naming([&] { run_training(cfg, comm); },
                                        {file, "slide " + slide, "its features changed since checkpoint",
                                         fs::path(ckpt).filename().string(), "--no-resume"}));
  // --no-resume trains on the new values.
  TrainConfig fresh = cfg;
  fresh.no_resume = true;
  EXPECT_NO_THROW(run_training(fresh, comm));
}

INSTANTIATE_TEST_SUITE_P(Layouts, ResumeDigests,
                         ::testing::Values(Variant{"contiguous_float32", false}, Variant{"clam_float16_cache", true}),
                         [](const auto& test_info) { return std::string(test_info.param.name); });

}  // namespace
}  // namespace mil
