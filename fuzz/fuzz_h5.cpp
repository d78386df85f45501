// The HDF5 reader as the data pipeline uses it: the index inspects `features` (and `coords`) by their headers
// and refuses a declared size over --max-bag-bytes; the loader then reads them, with HDF5's core driver for
// small chunks and without it otherwise. Both ways are read here.
#include "fuzz/fuzz_support.hpp"
#include "mil/io/h5_reader.hpp"

namespace {

// Far below --max-bag-bytes' default, so that a run stays fast; the index refuses larger declarations.
constexpr long double kMaxBytes = 16 << 20;

bool small_enough(const mil::io::H5DatasetInfo& info) {
  long double bytes = static_cast<long double>(info.type_size);
  for (const int64_t d : info.shape) bytes *= static_cast<long double>(d);
  return bytes <= kMaxBytes;
}

void read_like_the_pipeline(const std::string& path, bool in_memory) {
  const mil::io::H5Reader file(path, in_memory);
  for (const char* name : {"features", "coords"}) {
    if (!file.has(name)) continue;
    const mil::io::H5DatasetInfo info = file.info(name);
    (void)info.dtype_name();
    if (!small_enough(info)) continue;
    (void)file.read(name);
    if (info.type_class == H5T_FLOAT) (void)file.read_float(name);
  }
}

}  // namespace

extern "C" int DSMIL_FUZZ_ENTRY(const uint8_t* data, size_t size) {
  mil::fuzz::TempDir dir;
  const std::string path = dir.write("slide.h5", std::string(reinterpret_cast<const char*>(data), size));
  for (const bool in_memory : {false, true}) {
    mil::fuzz::guarded("h5", [&] { read_like_the_pipeline(path, in_memory); });
  }
  return 0;
}
