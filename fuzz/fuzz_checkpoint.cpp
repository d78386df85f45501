// The checkpoint decoder (what a resumed job reads back after the store checked its MANIFEST CRCs, so these
// bytes reach it when a checkpoint of another build or format version, or a bug of ours, is on disk).
#include "fuzz/fuzz_checkpoint.hpp"

#include "fuzz/fuzz_support.hpp"

extern "C" int DSMIL_FUZZ_ENTRY(const uint8_t* data, size_t size) {
  static const mil::JobIdentity identity = mil::fuzz::checkpoint_identity();
  return mil::fuzz::guarded("checkpoint", [&] {
    mil::Checkpoint ckpt;
    ckpt.step = 1;
    ckpt.path = "ckpt-1";
    ckpt.files = mil::fuzz::split_files(std::string(reinterpret_cast<const char*>(data), size),
                                        mil::fuzz::checkpoint_file_names());
    (void)mil::decode_checkpoint(ckpt, identity);
  });
}
