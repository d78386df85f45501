#include "mil/train/checkpoint_state.hpp"

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

std::vector<std::string> setting_differences(const json& saved, const json& now) {
  // An option added after the checkpoint was written trained as its default did.
  const json defaults = training_settings(TrainConfig{});
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
  return training_options_to_json(cfg);
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
  const json state = {{"format", kFormat},
                      {"version", kCheckpointFormatVersion},
                      {"sequence", progress.sequence},
                      {"settings", identity.settings},
                      {"data_digest", identity.data_digest},
                      {"bags_per_step", identity.bags_per_step},
                      {"finished", finished},
                      {"current", current},
                      {"epoch_records", progress.epoch_records},
                      {"total_epochs_planned", progress.total_epochs_planned},
                      {"epochs_done", progress.epochs_done},
                      {"tensors", tensors.names}};
  files[kState] = state.dump(1) + "\n";
  std::ostringstream out;
  torch::save(tensors.tensors, out);
  files[kTensors] = out.str();
  return files;
}

JobProgress decode_checkpoint(const Checkpoint& ckpt, const JobIdentity& expected) {
  const auto file = [&](const char* name) -> const std::string& {
    auto it = ckpt.files.find(name);
    if (it == ckpt.files.end()) throw Error(ckpt.path, name, "missing from the checkpoint");
    return it->second;
  };
  json state;
  try {
    state = json::parse(file(kState));
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
  // The identity: refuse to continue another training.
  std::vector<std::string> why = setting_differences(state.at("settings"), expected.settings);
  if (state.at("bags_per_step").get<int64_t>() != expected.bags_per_step) {
    why.push_back("bags per step (ranks x --accumulate x --bags-per-step): " + state.at("bags_per_step").dump() +
                  " in the checkpoint, now " + std::to_string(expected.bags_per_step));
  }
  if (state.at("data_digest").get<std::string>() != expected.data_digest) {
    why.push_back("the data differ (slide ids, instance counts, labels or splits; digest " +
                  state.at("data_digest").get<std::string>() + " in the checkpoint, now " + expected.data_digest + ")");
  }
  if (!why.empty()) {
    std::string text = "was written by a different training job: ";
    for (size_t i = 0; i < why.size(); ++i) text += (i ? "; " : "") + why[i];
    throw Error(ckpt.path, "", text + ". Pass --no-resume to start afresh, or use another --checkpoint-dir");
  }

  TensorReader tensors;
  tensors.source = ckpt.path;
  const std::vector<std::string> names = state.at("tensors").get<std::vector<std::string>>();
  try {
    std::vector<torch::Tensor> values;
    std::istringstream in(file(kTensors));
    torch::load(values, in);
    if (values.size() != names.size()) {
      throw Error(ckpt.path, kTensors,
                  std::to_string(values.size()) + " tensors, state.json names " + std::to_string(names.size()));
    }
    for (size_t i = 0; i < names.size(); ++i) tensors.by_name[names[i]] = values[i];
  } catch (const c10::Error& e) {
    throw Error(ckpt.path, kTensors, std::string("unreadable: ") + e.what_without_backtrace());
  }

  JobProgress p;
  try {
    p.sequence = state.at("sequence").get<int64_t>();
    p.epoch_records = state.at("epoch_records");
    p.total_epochs_planned = state.at("total_epochs_planned").get<int>();
    p.epochs_done = state.at("epochs_done").get<int>();
    const json& finished = state.at("finished");
    for (size_t i = 0; i < finished.size(); ++i) {
      const json& f = finished[i];
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
      p.finished.push_back(std::move(r));
    }
    const json& c = state.at("current");
    if (!c.is_null()) {
      RunProgress r;
      r.fold = c.at("fold").get<int>();
      r.epoch = c.at("epoch").get<int>();
      r.step = c.at("step").get<int64_t>();
      for (const json& v : c.at("bag_stats")) r.bag_stats.push_back(to_double(v));
      r.weights = tensors.state_dict("current/weights/", names);
      r.best_weights = tensors.state_dict("current/best_weights/", names);
      r.feature_mean = tensors.optional("current/feature_mean");
      r.feature_std = tensors.optional("current/feature_std");
      r.optimizer = file(kOptimizer);
      r.best_score = to_double(c.at("best_score"));
      r.best_epoch = c.at("best_epoch").get<int>();
      r.epochs_without_improvement = c.at("epochs_without_improvement").get<int>();
      r.best_thresholds = c.at("best_thresholds").get<std::vector<double>>();
      r.best_val_loss = to_double(c.at("best_val_loss"));
      r.best_val_probs = c.at("best_val_probs").get<std::vector<std::vector<double>>>();
      p.current = std::move(r);
    }
  } catch (const json::exception& e) {
    throw Error(ckpt.path, kState, std::string("malformed: ") + e.what());
  }
  return p;
}

}  // namespace mil
