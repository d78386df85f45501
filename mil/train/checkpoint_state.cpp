#include "mil/train/checkpoint_state.hpp"

#include <spdlog/spdlog.h>

#include <cmath>
#include <sstream>

#include "mil/config/options.hpp"
#include "mil/util/error.hpp"

namespace mil {
namespace {

using nlohmann::json;

constexpr const char* kFormat = "dsmil-checkpoint";
constexpr const char* kState = "state.json";
constexpr const char* kTensors = "tensors.pt";
constexpr const char* kOptimizer = "optimizer.pt";
constexpr const char* kAccumulate = "accumulate";

// "2 rank(s) x --accumulate 1 = 2 bag(s) per step"; ranks 0: not recorded.
std::string layout_text(int64_t ranks, int64_t bags_per_step) {
  const std::string bags = std::to_string(bags_per_step) + " bag(s) per step";
  if (ranks <= 0) return bags;
  return std::to_string(ranks) + " rank(s) x --accumulate " + std::to_string(bags_per_step / ranks) + " = " + bags;
}

// The ranks of the job that wrote `state`: recorded since the layout check; before it, the settings kept
// --accumulate, and bags per step / accumulate is the rank count. 0 when neither tells.
int64_t saved_ranks(const json& state, int64_t bags_per_step) {
  if (state.contains("ranks")) return state.at("ranks").get<int64_t>();
  const json& settings = state.at("settings");
  if (!settings.contains(kAccumulate) || !settings.at(kAccumulate).is_number_integer()) return 0;
  const int64_t accumulate = settings.at(kAccumulate).get<int64_t>();
  return accumulate > 0 && bags_per_step % accumulate == 0 ? bags_per_step / accumulate : 0;
}

// Empty when the checkpoint's bags per step are this job's (whatever their split into ranks and --accumulate:
// the same bags train in the same steps); else why not, naming both layouts.
std::string layout_difference(const json& state, const JobIdentity& now) {
  const int64_t bags = state.at("bags_per_step").get<int64_t>();
  const int64_t ranks = saved_ranks(state, bags);
  const std::string before = layout_text(ranks, bags);
  const std::string after = layout_text(now.ranks, now.bags_per_step);
  if (bags == now.bags_per_step) {
    if (ranks != now.ranks) {
      spdlog::info("[ckpt] resuming a checkpoint of {} as {}: the same bags in the same steps", before, after);
    }
    return "";
  }
  std::string hint;
  if (now.ranks > 0 && bags % now.ranks == 0) {
    hint = " (with " + std::to_string(now.ranks) + " rank(s): --accumulate " + std::to_string(bags / now.ranks) + ")";
  }
  return "layout (ranks x --accumulate = bags per step): " + before + " in the checkpoint, now " + after +
         "; the sampler's steps depend on the bags per step, so resuming needs " + std::to_string(bags) +
         " bags per step" + hint;
}

// JSON has no infinities or NaN: those travel as strings.
json number(double v) {
  if (std::isnan(v)) return "nan";
  if (std::isinf(v)) return v > 0 ? "inf" : "-inf";
  return v;
}

double to_double(const json& j) {
  if (j.is_number()) return j.get<double>();
  const std::string s = j.get<std::string>();
  if (s == "nan") return std::numeric_limits<double>::quiet_NaN();
  if (s == "inf") return std::numeric_limits<double>::infinity();
  if (s == "-inf") return -std::numeric_limits<double>::infinity();
  throw Error("", "", "not a number: '" + s + "'");
}

// Collects the tensors in order with their names; state.json lists the names.
struct TensorWriter {
  std::vector<std::string> names;
  std::vector<torch::Tensor> tensors;

  void add(const std::string& name, const torch::Tensor& t) {
    if (!t.defined()) return;
    names.push_back(name);
    tensors.push_back(t.detach().to(torch::kCPU).contiguous());
  }
  void add(const std::string& prefix, const StateDict& weights) {
    for (const auto& [key, t] : weights) add(prefix + key, t);
  }
};

struct TensorReader {
  std::map<std::string, torch::Tensor> by_name;
  std::string source;

  torch::Tensor optional(const std::string& name) const {
    auto it = by_name.find(name);
    return it == by_name.end() ? torch::Tensor() : it->second;
  }
  // The entries under `prefix`, in the order they were written (the model's parameter order).
  StateDict state_dict(const std::string& prefix, const std::vector<std::string>& order) const {
    StateDict out;
    for (const std::string& name : order) {
      if (name.rfind(prefix, 0) == 0) out.emplace_back(name.substr(prefix.size()), by_name.at(name));
    }
    if (out.empty()) throw Error(source, prefix, "no weights in the checkpoint");
    return out;
  }
};

// --cache none, ram32 and auto train on the same values (float32 as read); ram and gpu on the same float16 ones.
json same_values_cache(json settings) {
  if (!settings.contains("cache")) return settings;
  const bool float16 = settings["cache"] == "ram" || settings["cache"] == "gpu";
  settings["cache"] = float16 ? "ram" : "none";
  return settings;
}

std::vector<std::string> setting_differences(const json& saved_settings, const json& now_settings) {
  json saved = same_values_cache(saved_settings);
  const json now = same_values_cache(now_settings);
  // An option added after the checkpoint was written trained as its default did.
  const json defaults = same_values_cache(training_settings(TrainConfig{}));
  saved.erase(kAccumulate);  // checkpoints before the layout check kept it: compared as the layout instead
  std::vector<std::string> out;
  for (const auto& [key, value] : now.items()) {
    if (!saved.contains(key)) {
      if (!defaults.contains(key) || defaults[key] != value) {
        out.push_back(key + ": not in the checkpoint, now " + value.dump());
      }
    } else if (saved[key] != value) {
      out.push_back(key + ": " + saved[key].dump() + " in the checkpoint, now " + value.dump());
    }
  }
  for (const auto& [key, value] : saved.items()) {
    if (!now.contains(key)) out.push_back(key + ": " + value.dump() + " in the checkpoint, unknown now");
  }
  return out;
}

}  // namespace

json training_settings(const TrainConfig& cfg) {
  json settings = training_options_to_json(cfg);
  settings.erase(kAccumulate);
  return settings;
}

std::string data_digest(const std::vector<std::pair<std::string, const BagIndex*>>& sets) {
  std::ostringstream text;
  for (const auto& [name, index] : sets) {
    text << name << " D=" << index->feature_dim << "\n";
    for (const BagInfo& b : index->bags) {
      text << b.slide_id << " " << b.num_instances;
      for (float t : b.target) text << " " << t;
      text << "\n";
    }
  }
  return crc32_hex(text.str());
}

json digest_table_to_json(const SlideDigestTable& table) {
  json j = json::object();
  for (const auto& [channel, digests] : table) {
    json slides = json::object();
    for (const auto& [slide, digest] : digests) slides[slide] = digest_hex(digest);
    j[channel] = std::move(slides);
  }
  return j;
}

SlideDigestTable digest_table_from_json(const json& j) {
  if (!j.is_object()) throw Error("", "slide_digests", "not an object");
  SlideDigestTable table;
  for (const auto& [channel, slides] : j.items()) {
    if (!slides.is_object()) throw Error("", "slide_digests", "'" + channel + "' is not an object");
    DigestMap& digests = table[channel];
    for (const auto& [slide, digest] : slides.items()) {
      if (!digest.is_string()) throw Error("", "slide_digests", "'" + slide + "' is not a string");
      digests.emplace(slide, parse_digest_hex(digest.get<std::string>()));
    }
  }
  return table;
}

std::map<std::string, std::string> encode_checkpoint(const JobProgress& progress, const JobIdentity& identity) {
  TensorWriter tensors;
  json finished = json::array();
  for (size_t i = 0; i < progress.finished.size(); ++i) {
    const FinishedRun& r = progress.finished[i];
    const std::string prefix = "finished/" + std::to_string(i) + "/";
    tensors.add(prefix + "weights/", r.weights);
    tensors.add(prefix + "feature_mean", r.feature_mean);
    tensors.add(prefix + "feature_std", r.feature_std);
    finished.push_back({{"fold", r.fold},
                        {"thresholds", r.thresholds},
                        {"info", r.info},
                        {"val_loss", number(r.val_loss)},
                        {"val_probs", r.val_probs}});
  }
  json current = nullptr;
  std::map<std::string, std::string> files;
  if (progress.current) {
    const RunProgress& c = *progress.current;
    tensors.add("current/weights/", c.weights);
    tensors.add("current/best_weights/", c.best_weights);
    tensors.add("current/feature_mean", c.feature_mean);
    tensors.add("current/feature_std", c.feature_std);
    json stats = json::array();
    for (double v : c.bag_stats) stats.push_back(number(v));
    current = {{"fold", c.fold},
               {"epoch", c.epoch},
               {"step", c.step},
               {"bag_stats", stats},
               {"best_score", number(c.best_score)},
               {"best_epoch", c.best_epoch},
               {"epochs_without_improvement", c.epochs_without_improvement},
               {"best_thresholds", c.best_thresholds},
               {"best_val_loss", number(c.best_val_loss)},
               {"best_val_probs", c.best_val_probs}};
    files[kOptimizer] = c.optimizer;
  }
  json state = {{"format", kFormat},
                {"version", kCheckpointFormatVersion},
                {"sequence", progress.sequence},
                {"settings", identity.settings},
                {"data_digest", identity.data_digest},
                {"bags_per_step", identity.bags_per_step},
                {"ranks", identity.ranks},
                {"finished", finished},
                {"current", current},
                {"epoch_records", progress.epoch_records},
                {"total_epochs_planned", progress.total_epochs_planned},
                {"epochs_done", progress.epochs_done},
                {"tensors", tensors.names}};
  if (progress.slide_digests) state["slide_digests"] = digest_table_to_json(*progress.slide_digests);
  files[kState] = state.dump(1) + "\n";
  std::ostringstream out;
  torch::save(tensors.tensors, out);
  files[kTensors] = out.str();
  return files;
}

namespace {

const std::string& checkpoint_file(const Checkpoint& ckpt, const char* name) {
  auto it = ckpt.files.find(name);
  if (it == ckpt.files.end()) throw Error(ckpt.path, name, "missing from the checkpoint");
  return it->second;
}

// state.json, parsed, of our format and of a version this build reads.
json read_state(const Checkpoint& ckpt) {
  json state;
  try {
    state = json::parse(checkpoint_file(ckpt, kState));
  } catch (const json::exception& e) {
    throw Error(ckpt.path, kState, std::string("unreadable: ") + e.what());
  }
  if (state.value("format", "") != kFormat) throw Error(ckpt.path, kState, "not a dsmil_train checkpoint");
  const json version = state.value("version", json(0));
  if (!version.is_number_integer() || version.get<int>() < kOldestReadableCheckpointVersion ||
      version.get<int>() > kCheckpointFormatVersion) {
    throw Error(ckpt.path, kState,
                "format version " + version.dump() + ", this dsmil_train reads versions " +
                    std::to_string(kOldestReadableCheckpointVersion) + " to " +
                    std::to_string(kCheckpointFormatVersion));
  }
  return state;
}

// The identity: refuses to continue another training (settings, layout, data), naming every difference.
void check_identity(const json& state, const JobIdentity& expected, const std::string& path) {
  std::vector<std::string> why = setting_differences(state.at("settings"), expected.settings);
  const std::string layout = layout_difference(state, expected);
  if (!layout.empty()) why.push_back(layout);
  if (state.at("data_digest").get<std::string>() != expected.data_digest) {
    why.push_back("the data differ (slide ids, instance counts, labels or splits; digest " +
                  state.at("data_digest").get<std::string>() + " in the checkpoint, now " + expected.data_digest + ")");
  }
  if (why.empty()) return;
  std::string text = "was written by a different training job: ";
  for (size_t i = 0; i < why.size(); ++i) text += (i ? "; " : "") + why[i];
  throw Error(path, "", text + ". Pass --no-resume to start afresh, or use another --checkpoint-dir");
}

// tensors.pt, each tensor under the name state.json gives it.
TensorReader read_tensors(const Checkpoint& ckpt, const std::vector<std::string>& names) {
  TensorReader tensors;
  tensors.source = ckpt.path;
  try {
    std::vector<torch::Tensor> values;
    std::istringstream in(checkpoint_file(ckpt, kTensors));
    torch::load(values, in);
    if (values.size() != names.size()) {
      throw Error(ckpt.path, kTensors,
                  std::to_string(values.size()) + " tensors, state.json names " + std::to_string(names.size()));
    }
    for (size_t i = 0; i < names.size(); ++i) tensors.by_name[names[i]] = values[i];
  } catch (const c10::Error& e) {
    throw Error(ckpt.path, kTensors, std::string("unreadable: ") + e.what_without_backtrace());
  } catch (const Error&) {
    throw;
  } catch (const std::exception& e) {  // torch::load's TorchScript parser throws std::runtime_error subclasses
    throw Error(ckpt.path, kTensors, std::string("unreadable: ") + e.what());
  }
  return tensors;
}

FinishedRun decode_finished(const json& f, size_t i, const TensorReader& tensors,
                            const std::vector<std::string>& names) {
  const std::string prefix = "finished/" + std::to_string(i) + "/";
  FinishedRun r;
  r.fold = f.at("fold").get<int>();
  r.weights = tensors.state_dict(prefix + "weights/", names);
  r.feature_mean = tensors.optional(prefix + "feature_mean");
  r.feature_std = tensors.optional(prefix + "feature_std");
  r.thresholds = f.at("thresholds").get<std::vector<double>>();
  r.info = f.at("info");
  r.val_loss = to_double(f.at("val_loss"));
  r.val_probs = f.at("val_probs").get<std::vector<std::vector<double>>>();
  return r;
}

RunProgress decode_current(const json& c, const TensorReader& tensors, const std::vector<std::string>& names,
                           const Checkpoint& ckpt) {
  RunProgress r;
  r.fold = c.at("fold").get<int>();
  r.epoch = c.at("epoch").get<int>();
  r.step = c.at("step").get<int64_t>();
  for (const json& v : c.at("bag_stats")) r.bag_stats.push_back(to_double(v));
  r.weights = tensors.state_dict("current/weights/", names);
  r.best_weights = tensors.state_dict("current/best_weights/", names);
  r.feature_mean = tensors.optional("current/feature_mean");
  r.feature_std = tensors.optional("current/feature_std");
  r.optimizer = checkpoint_file(ckpt, kOptimizer);
  r.best_score = to_double(c.at("best_score"));
  r.best_epoch = c.at("best_epoch").get<int>();
  r.epochs_without_improvement = c.at("epochs_without_improvement").get<int>();
  r.best_thresholds = c.at("best_thresholds").get<std::vector<double>>();
  r.best_val_loss = to_double(c.at("best_val_loss"));
  r.best_val_probs = c.at("best_val_probs").get<std::vector<std::vector<double>>>();
  return r;
}

JobProgress decode_checked(const Checkpoint& ckpt, const JobIdentity& expected) {
  const json state = read_state(ckpt);
  check_identity(state, expected, ckpt.path);
  const std::vector<std::string> names = state.at("tensors").get<std::vector<std::string>>();
  const TensorReader tensors = read_tensors(ckpt, names);

  JobProgress p;
  try {
    p.sequence = state.at("sequence").get<int64_t>();
    p.epoch_records = state.at("epoch_records");
    p.total_epochs_planned = state.at("total_epochs_planned").get<int>();
    p.epochs_done = state.at("epochs_done").get<int>();
    const json& finished = state.at("finished");
    for (size_t i = 0; i < finished.size(); ++i) p.finished.push_back(decode_finished(finished[i], i, tensors, names));
    const json& c = state.at("current");
    if (!c.is_null()) p.current = decode_current(c, tensors, names, ckpt);
  } catch (const json::exception& e) {
    throw Error(ckpt.path, kState, std::string("malformed: ") + e.what());
  }
  if (state.contains("slide_digests")) {
    try {
      p.slide_digests = digest_table_from_json(state.at("slide_digests"));
    } catch (const Error& e) {
      throw Error(ckpt.path, kState, "malformed slide_digests: " + e.reason());
    }
  }
  return p;
}

}  // namespace

JobProgress decode_checkpoint(const Checkpoint& ckpt, const JobIdentity& expected) {
  // state.json of another shape (not an object, an identity field missing or of another type) must not
  // reach the user as a bare json exception (fuzz/fuzz_checkpoint.cpp; tests/fuzz/corpus/checkpoint/regression-*).
  try {
    return decode_checked(ckpt, expected);
  } catch (const nlohmann::json::exception& e) {
    throw Error(ckpt.path, kState, std::string("malformed: ") + e.what());
  }
}

}  // namespace mil
