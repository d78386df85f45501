// The fuzz targets without libFuzzer: every file of the given corpus directories (or the files given) is fed
// to one target's entry function, as `dsmil_fuzz_<target> DIR` would replay them. ctest runs it over the
// committed corpus (tests/fuzz/corpus/<target>/), in the GCC build and in the sanitizer build. A finding
// aborts with the target's message; the last "[replay]" line names the input.
//   usage: dsmil_fuzz_replay TARGET PATH...      (PATH: a file or a directory of inputs)
//          dsmil_fuzz_replay --make-seeds DIR    (writes the generated seed inputs under DIR/<target>/)
#include <algorithm>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "fuzz/fuzz_support.hpp"

extern "C" int fuzz_csv(const uint8_t* data, size_t size);
extern "C" int fuzz_torch_archive(const uint8_t* data, size_t size);
extern "C" int fuzz_checkpoint(const uint8_t* data, size_t size);
extern "C" int fuzz_hyperparameters(const uint8_t* data, size_t size);
extern "C" int fuzz_resourceconfig(const uint8_t* data, size_t size);
extern "C" int fuzz_h5(const uint8_t* data, size_t size);

namespace mil::fuzz {
void make_seeds(const std::filesystem::path& root);  // make_seeds.cpp
}

namespace {

namespace fs = std::filesystem;
using Entry = int (*)(const uint8_t*, size_t);

struct Target {
  const char* name;
  Entry entry;
};
constexpr Target kTargets[] = {{"csv", fuzz_csv},
                               {"torch_archive", fuzz_torch_archive},
                               {"checkpoint", fuzz_checkpoint},
                               {"hyperparameters", fuzz_hyperparameters},
                               {"resourceconfig", fuzz_resourceconfig},
                               {"h5", fuzz_h5}};

std::vector<fs::path> inputs_under(const fs::path& path) {
  std::vector<fs::path> files;
  if (fs::is_directory(path)) {
    for (const auto& entry : fs::recursive_directory_iterator(path)) {
      if (entry.is_regular_file()) files.push_back(entry.path());
    }
    std::sort(files.begin(), files.end());
  } else {
    files.push_back(path);
  }
  return files;
}

int usage() {
  std::fprintf(stderr, "usage: dsmil_fuzz_replay TARGET PATH... | --make-seeds DIR\ntargets:");
  for (const Target& t : kTargets) std::fprintf(stderr, " %s", t.name);
  std::fprintf(stderr, "\n");
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc == 3 && std::strcmp(argv[1], "--make-seeds") == 0) {
    mil::fuzz::make_seeds(argv[2]);
    return 0;
  }
  if (argc < 3) return usage();
  const Target* target = nullptr;
  for (const Target& t : kTargets) {
    if (std::strcmp(argv[1], t.name) == 0) target = &t;
  }
  if (target == nullptr) return usage();
  size_t count = 0;
  for (int i = 2; i < argc; ++i) {
    if (!fs::exists(argv[i])) {
      std::fprintf(stderr, "[replay] %s: no such file or directory\n", argv[i]);
      return 2;
    }
    for (const fs::path& file : inputs_under(argv[i])) {
      std::fprintf(stderr, "[replay] %s %s\n", target->name, file.c_str());
      std::ifstream in(file, std::ios::binary);
      const std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
      target->entry(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size());
      ++count;
    }
  }
  if (count == 0) {
    std::fprintf(stderr, "[replay] no inputs\n");
    return 2;
  }
  std::printf("[replay] %s: %zu inputs, no findings\n", target->name, count);
  return 0;
}
