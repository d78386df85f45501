// Resuming dsmil_train from its checkpoints, in process: a job restarted from any checkpoint it wrote (mid
// epoch, end of epoch, between folds) ends with the uninterrupted job's model file to the bit and the same
// metrics; a truncated newest checkpoint falls back to the previous one; a checkpoint of other data or
// other settings is refused, naming what differs; --no-resume starts afresh.
#include <gtest/gtest.h>

#include <filesystem>
#include <nlohmann/json.hpp>

#include "mil/data/synthetic.hpp"
#include "mil/dist/communicator.hpp"
#include "mil/io/files.hpp"
#include "mil/model/flat_params.hpp"
#include "mil/train/checkpoint_state.hpp"
#include "mil/train/checkpoint_store.hpp"
#include "mil/train/fused_adam.hpp"
#include "mil/train/trainer.hpp"
#include "mil/util/error.hpp"
#include "tests/test_util.hpp"

namespace mil {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

class Resume : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    data_ = new test::TempDir;
    SyntheticOptions o;
    o.num_bags = 30;
    o.feature_dim = 16;
    o.log_mean_instances = 3.5;
    o.seed = 1;
    o.direction_seed = 3;
    write_synthetic_channel(data_->file("train"), o);
    o.seed = 2;
    write_synthetic_channel(data_->file("other"), o);
    // The reference: 2 folds of 3 epochs, every checkpoint kept.
    TrainConfig cfg = config("ref");
    cfg.keep_checkpoints = 1000;
    LocalCommunicator comm;
    run_training(cfg, comm);
  }
  static void TearDownTestSuite() { delete data_; }

  // Two folds (so a checkpoint can fall between them), patch dropout, standardisation, a checkpoint every
  // 5 steps: everything a checkpoint has to carry.
  static TrainConfig config(const std::string& name) {
    TrainConfig cfg;
    cfg.train_dir = data_->file("train");
    cfg.labels = data_->file("train/labels.csv");
    cfg.model_dir = data_->file(name + "/model");
    cfg.output_dir = data_->file(name + "/output");
    cfg.checkpoint_dir = data_->file(name + "/checkpoints");
    cfg.checkpoint_every_steps = 5;
    cfg.checkpoint_every_seconds = 0;
    cfg.epochs = 3;
    cfg.folds = 2;
    cfg.lr = 1e-3;
    cfg.dropout_patch = 0.2;
    cfg.standardize = true;
    cfg.log_level = "warn";
    return cfg;
  }

  static std::vector<std::string> reference_checkpoints() {
    return CheckpointStore(data_->file("ref/checkpoints"), 1000).list();  // newest first
  }

  // A checkpoint directory holding copies of these checkpoints only.
  static std::string dir_with(const std::string& name, const std::vector<std::string>& checkpoints) {
    const std::string dir = data_->file(name + "/checkpoints");
    fs::remove_all(data_->file(name));
    fs::create_directories(dir);
    for (const std::string& c : checkpoints) {
      fs::copy(c, dir + "/" + fs::path(c).filename().string(), fs::copy_options::recursive);
    }
    return dir;
  }

  // metrics.json without the timings.
  static json metrics_of(const std::string& name) {
    json m = json::parse(io::read_file(data_->file(name + "/output/metrics.json")));
    for (json& e : m["epochs"]) {
      e.erase("seconds");
      e.erase("instances_per_second");
    }
    return m;
  }

  static void expect_same_as_reference(const std::string& name) {
    EXPECT_EQ(io::read_file(data_->file(name + "/model/model.pt")), io::read_file(data_->file("ref/model/model.pt")));
    EXPECT_EQ(io::read_file(data_->file(name + "/model/model.pth")), io::read_file(data_->file("ref/model/model.pth")));
    EXPECT_EQ(metrics_of(name), metrics_of("ref"));
    EXPECT_EQ(io::read_file(data_->file(name + "/output/predictions.csv")),
              io::read_file(data_->file("ref/output/predictions.csv")));
  }

  static std::string error_of(const TrainConfig& cfg) {
    LocalCommunicator comm;
    return test::error_message([&] { run_training(cfg, comm); });
  }

  static test::TempDir* data_;
};
test::TempDir* Resume::data_ = nullptr;

TEST_F(Resume, TheReferenceWroteCheckpointsOfEveryKind) {
  // 15 training slides per fold: 15 steps per epoch, so checkpoints at steps 5, 10, 15 and each epoch end.
  const std::vector<std::string> all = reference_checkpoints();
  EXPECT_EQ(all.size(), 2u * (3 * 3 + 2 + 1));
}

TEST_F(Resume, FromAnyCheckpointEndsWithTheSameModel) {
  const std::vector<std::string> all = reference_checkpoints();
  ASSERT_GE(all.size(), 24u);  // the indices below go up to 23
  // Newest first, 12 per fold: 0 = fold 1 finished, 1 = its epoch 3 step 15, 5 = epoch 2 step 15, 8 = end of
  // epoch 1; 12 = fold 0 finished, 13 = its epoch 3 step 15, 16 = end of epoch 2, 23 = epoch 1 step 5.
  for (size_t i : {0u, 1u, 5u, 8u, 12u, 13u, 16u, 23u}) {
    SCOPED_TRACE("resumed from " + all[i]);
    TrainConfig cfg = config("resumed");
    dir_with("resumed", {all[i]});
    LocalCommunicator comm;
    run_training(cfg, comm);
    expect_same_as_reference("resumed");
  }
}

// The optimizer.pt of a format-1 checkpoint (torch::optim::Adam's per-parameter state, as dsmil_train wrote
// before the fused Adam) holding the same moments as `fused_bytes` (this job's model: D = 16, one class).
std::string as_format1_optimizer(const std::string& fused_bytes) {
  ModelConfig mc;
  mc.feature_dim = 16;
  DsmilNet net(mc);
  FlatParameters flat(*net);
  FusedAdam fused(flat.values(), flat.grads(), {});
  fused.load_state(fused_bytes, "reference checkpoint", net->parameters());
  auto adam = make_adam(net->parameters(), {});
  for (const torch::Tensor& p : net->parameters()) {
    const int64_t offset = p.data_ptr<float>() - flat.values().data_ptr<float>();
    auto st = std::make_unique<torch::optim::AdamParamState>();
    st->step(fused.steps_taken());
    st->exp_avg(fused.exp_avg().narrow(0, offset, p.numel()).view(p.sizes()).clone());
    st->exp_avg_sq(fused.exp_avg_sq().narrow(0, offset, p.numel()).view(p.sizes()).clone());
    adam->state()[optimizer_state_key(p)] = std::move(st);
  }
  return save_optimizer_state(*adam);
}

TEST_F(Resume, ACheckpointOfFormat1EndsWithTheSameModel) {
  const std::vector<std::string> all = reference_checkpoints();
  for (size_t i : {1u, 23u}) {  // fold 1's epoch 3 step 15; fold 0's epoch 1 step 5
    SCOPED_TRACE("format 1 of " + all[i]);
    const std::string dir = dir_with("format1", {all[i]});
    Checkpoint ckpt = *CheckpointStore(dir, 1000).load_latest();
    fs::remove_all(dir);
    json state = json::parse(ckpt.files.at("state.json"));
    ASSERT_EQ(state["version"], 2);
    state["version"] = 1;
    ckpt.files["state.json"] = state.dump(1) + "\n";
    ckpt.files["optimizer.pt"] = as_format1_optimizer(ckpt.files.at("optimizer.pt"));
    CheckpointStore(dir, 1000).write(ckpt.step, ckpt.files);
    LocalCommunicator comm;
    run_training(config("format1"), comm);
    expect_same_as_reference("format1");
  }
}

TEST_F(Resume, ACheckpointOfAnUnknownFormatIsRefused) {
  const std::string dir = dir_with("format3", {reference_checkpoints()[5]});
  Checkpoint ckpt = *CheckpointStore(dir, 1000).load_latest();
  fs::remove_all(dir);
  json state = json::parse(ckpt.files.at("state.json"));
  state["version"] = 3;
  ckpt.files["state.json"] = state.dump(1) + "\n";
  CheckpointStore(dir, 1000).write(ckpt.step, ckpt.files);
  const std::string msg = error_of(config("format3"));
  EXPECT_NE(msg.find("format version 3, this dsmil_train reads versions 1 to 2"), std::string::npos) << msg;
}

TEST_F(Resume, ATruncatedNewestCheckpointFallsBackToThePrevious) {
  const std::vector<std::string> all = reference_checkpoints();
  const std::string dir = dir_with("truncated", {all[8], all[7]});
  const std::string newest = dir + "/" + fs::path(all[7]).filename().string();
  fs::resize_file(newest + "/tensors.pt", fs::file_size(newest + "/tensors.pt") / 2);
  LocalCommunicator comm;
  run_training(config("truncated"), comm);
  expect_same_as_reference("truncated");
}

TEST_F(Resume, ACheckpointOfOtherDataIsRefused) {
  const std::vector<std::string> all = reference_checkpoints();
  TrainConfig cfg = config("other_data");
  dir_with("other_data", {all[5]});
  cfg.train_dir = data_->file("other");
  cfg.labels = data_->file("other/labels.csv");
  const std::string msg = error_of(cfg);
  EXPECT_NE(msg.find("was written by a different training job"), std::string::npos) << msg;
  EXPECT_NE(msg.find("the data differ"), std::string::npos) << msg;
  EXPECT_NE(msg.find("--no-resume"), std::string::npos) << msg;
}

TEST_F(Resume, ACheckpointOfOtherSettingsIsRefusedNamingThem) {
  const std::vector<std::string> all = reference_checkpoints();
  TrainConfig cfg = config("other_settings");
  dir_with("other_settings", {all[5]});
  cfg.lr = 2e-3;
  cfg.epochs = 4;
  const std::string msg = error_of(cfg);
  EXPECT_NE(msg.find("lr: 0.001 in the checkpoint, now 0.002"), std::string::npos) << msg;
  EXPECT_NE(msg.find("epochs: 3 in the checkpoint, now 4"), std::string::npos) << msg;
  EXPECT_EQ(msg.find("the data differ"), std::string::npos) << msg;
  // Where outputs go, threads and the checkpoint schedule are not part of what is trained.
  cfg = config("other_settings");
  cfg.threads = 1;
  cfg.checkpoint_every_steps = 7;
  cfg.model_dir = data_->file("other_settings/elsewhere");
  EXPECT_EQ(error_of(cfg), "");
}

// A checkpoint written before an option existed trained as the option's default: resumable with the default,
// refused with another value.
TEST(ResumeSettings, AnOptionNewerThanTheCheckpointCountsAsItsDefault) {
  TrainConfig cfg;
  cfg.passing_v = true;
  JobIdentity older{training_settings(cfg), "digest", 1};
  older.settings.erase("value-relu");
  const Checkpoint ckpt{1, "ckpt-1", encode_checkpoint(JobProgress{}, older)};

  JobIdentity now{training_settings(cfg), "digest", 1};
  EXPECT_NO_THROW(decode_checkpoint(ckpt, now));
  cfg.value_relu = false;
  now.settings = training_settings(cfg);
  try {
    decode_checkpoint(ckpt, now);
    ADD_FAILURE() << "a checkpoint without value-relu resumed a job with --value-relu false";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("value-relu: not in the checkpoint, now false"), std::string::npos)
        << e.what();
  }
}

// --cache none, ram32 and auto (the default since a later version) train on the same float32 values, so a
// checkpoint of one resumes under another; float16 (ram) changes the values and is refused.
TEST(ResumeSettings, CacheModesOfTheSameValuesResumeEachOther) {
  TrainConfig cfg;
  cfg.cache = "none";
  const Checkpoint ckpt{1, "ckpt-1", encode_checkpoint(JobProgress{}, JobIdentity{training_settings(cfg), "d", 1})};
  for (const char* same : {"none", "auto", "ram32"}) {
    cfg.cache = same;
    EXPECT_NO_THROW(decode_checkpoint(ckpt, JobIdentity{training_settings(cfg), "d", 1})) << same;
  }
  cfg.cache = "ram";
  try {
    decode_checkpoint(ckpt, JobIdentity{training_settings(cfg), "d", 1});
    ADD_FAILURE() << "a float32-cache checkpoint resumed a float16-cache job";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("cache: \"none\" in the checkpoint, now \"ram\""), std::string::npos)
        << e.what();
  }
}

// --cache gpu keeps the float16 values --cache ram keeps, on the GPU: a spot job moved between a GPU and a CPU
// host resumes across the two; against a float32 cache it is refused like ram.
TEST(ResumeSettings, GpuAndRamCachesOfFloat16ResumeEachOther) {
  TrainConfig cfg;
  cfg.cache = "gpu";
  const Checkpoint ckpt{1, "ckpt-1", encode_checkpoint(JobProgress{}, JobIdentity{training_settings(cfg), "d", 1})};
  cfg.cache = "ram";
  EXPECT_NO_THROW(decode_checkpoint(ckpt, JobIdentity{training_settings(cfg), "d", 1}));
  cfg.cache = "auto";
  EXPECT_THROW(decode_checkpoint(ckpt, JobIdentity{training_settings(cfg), "d", 1}), Error);
}

TEST_F(Resume, NoResumeStartsAfreshAndItsCheckpointsComeFirst) {
  const std::vector<std::string> all = reference_checkpoints();
  TrainConfig cfg = config("fresh");
  const std::string dir = dir_with("fresh", {all[0]});  // a finished job's last checkpoint
  cfg.lr = 2e-3;                                        // would be refused without --no-resume
  cfg.no_resume = true;
  cfg.keep_checkpoints = 2;
  LocalCommunicator comm;
  run_training(cfg, comm);
  const std::vector<std::string> kept = CheckpointStore(dir, 2).list();
  ASSERT_EQ(kept.size(), 2u);
  const std::string old_name = fs::path(all[0]).filename().string();
  for (const std::string& k : kept) EXPECT_GT(fs::path(k).filename().string(), old_name);
  // Its metrics are its own: a different learning rate trains another model.
  EXPECT_NE(metrics_of("fresh"), metrics_of("ref"));
}

}  // namespace
}  // namespace mil
