#include "mil/config/job_environment.hpp"

#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>

#include "mil/io/files.hpp"
#include "mil/util/error.hpp"

namespace mil {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

// The file's JSON object, or null when the file does not exist.
json read_config(const fs::path& path) {
  std::error_code ec;
  if (!fs::exists(path, ec)) return nullptr;
  json doc = json::parse(io::read_file(path.string()), nullptr, /*allow_exceptions=*/false);
  if (!doc.is_object()) throw Error(path.string(), "", "not a JSON object as SageMaker writes it");
  return doc;
}

void check_hosts(const fs::path& path, int world_size) {
  const json config = read_config(path);
  if (config.is_null() || !config.contains("hosts") || !config["hosts"].is_array()) return;
  const json& hosts = config["hosts"];
  if (hosts.size() <= 1 || world_size > 1) return;
  std::string names;
  for (const json& h : hosts) names += (names.empty() ? "" : ", ") + (h.is_string() ? h.get<std::string>() : h.dump());
  throw Error(path.string(), "hosts",
              "the job has " + std::to_string(hosts.size()) + " hosts (" + names +
                  ") but dsmil_train runs as a single process, not under mpirun: each host would train its own "
                  "model. Use the mpi distribution (scripts/sagemaker/launch.py does for --instance-count > 1) "
                  "or one instance");
}

void check_channels(const fs::path& path) {
  const json config = read_config(path);
  if (config.is_null()) return;
  for (const auto& [channel, settings] : config.items()) {
    if (!settings.is_object() || settings.value("S3DistributionType", json()) != "ShardedByS3Key") continue;
    throw Error(path.string(), channel,
                "channel '" + channel +
                    "' is ShardedByS3Key, so each host gets only part of its files; dsmil_train shards bags over "
                    "its ranks itself and needs every slide on every host: use FullyReplicated (the default)");
  }
}

}  // namespace

void check_job_environment(const SageMakerEnvironment& env, int world_size) {
  const fs::path config = fs::path(env.root) / "input" / "config";
  check_hosts(config / "resourceconfig.json", world_size);
  check_channels(config / "inputdataconfig.json");
}

}  // namespace mil
