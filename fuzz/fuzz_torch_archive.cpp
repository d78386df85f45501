// The torch.save archive reader and the model files built on it (.pth state dicts, our model files): any
// bytes as a file, read as dsmil_eval and --init-weights read them.
#include "fuzz/fuzz_support.hpp"
#include "mil/io/torch_archive.hpp"
#include "mil/model/state_dict.hpp"

extern "C" int DSMIL_FUZZ_ENTRY(const uint8_t* data, size_t size) {
  mil::fuzz::TempDir dir;
  const std::string path = dir.write("model.pth", std::string(reinterpret_cast<const char*>(data), size));
  mil::fuzz::guarded("torch_archive", [&] { (void)mil::io::read_torch_archive(path); });
  return mil::fuzz::guarded("torch_archive", [&] {
    nlohmann::json metadata;
    (void)mil::load_model(path, &metadata);
  });
}
