#pragma once
#include <string>
#include <string_view>

namespace mil::io {

// Replaces `path` with `bytes` so that a reader (or an S3 sync) never sees a partial file: write to a
// temporary file in the same directory, fsync it, rename it over `path`, fsync the directory.
// Throws mil::Error naming the path on any failure; the previous file, if any, is left intact.
void write_file_atomically(const std::string& path, std::string_view bytes);

// Whole file into memory; throws mil::Error naming the path when it cannot be read.
std::string read_file(const std::string& path);

}  // namespace mil::io
