// SageMaker's hyperparameters.json and a --config file: read into a layer, applied to the defaults, validated,
// as dsmil_train does (parse_train_config + validate) without following a --config path named inside.
#include "fuzz/fuzz_support.hpp"
#include "mil/config/options.hpp"
#include "mil/config/train_config.hpp"

extern "C" int DSMIL_FUZZ_ENTRY(const uint8_t* data, size_t size) {
  mil::fuzz::TempDir dir;
  const std::string path = dir.write("hyperparameters.json", std::string(reinterpret_cast<const char*>(data), size));
  for (const bool is_config_file : {false, true}) {
    mil::fuzz::guarded("hyperparameters", [&] {
      mil::TrainConfig cfg;
      mil::apply(cfg, mil::json_layer(path, is_config_file));
      (void)mil::options_to_json(cfg);
      mil::validate(cfg);
    });
  }
  return 0;
}
