#pragma once
// Reading and writing PyTorch `torch.save` zip archives (.pth / .pt) from C++.
#include <ATen/core/ivalue.h>

#include <string>

namespace mil::io {

// Reads a `torch.save` zip archive. Every storage is materialised on the CPU whatever device it was
// saved from (the authors' weights, like most users', carry `cuda:0` tags that a CPU-only libtorch
// cannot create). `collections.OrderedDict` (what `model.state_dict()` is) comes back as a plain dict.
// Throws mil::Error naming the file when it is missing, not an archive or cannot be unpickled.
c10::IValue read_torch_archive(const std::string& path);

// Writes `value` in the zip format that Python's `torch.load` reads, atomically.
void write_torch_archive(const std::string& path, const c10::IValue& value);

}  // namespace mil::io
