// SageMaker's resourceconfig.json and inputdataconfig.json, checked by check_job_environment at start-up.
#include "fuzz/fuzz_support.hpp"
#include "mil/config/job_environment.hpp"

extern "C" int DSMIL_FUZZ_ENTRY(const uint8_t* data, size_t size) {
  mil::fuzz::TempDir dir;
  const std::string bytes(reinterpret_cast<const char*>(data), size);
  dir.write("input/config/resourceconfig.json", bytes);
  dir.write("input/config/inputdataconfig.json", bytes);
  mil::SageMakerEnvironment env;
  env.root = dir.path().string();
  for (const int world_size : {1, 2}) {
    mil::fuzz::guarded("resourceconfig", [&] { mil::check_job_environment(env, world_size); });
  }
  return 0;
}
