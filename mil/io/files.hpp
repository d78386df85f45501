#pragma once
#include <string>
#include <string_view>

namespace mil::io {

// Replaces `path` with `bytes` so that a reader (or an S3 sync) never sees a partial file: write to a
// temporary file in the same directory, fsync it, rename it over `path`, fsync the directory.
// Throws mil::Error naming the path on any failure; the previous file, if any, is left intact.
void write_file_atomically(const std::string& path, std::string_view bytes);

// Creates `dir` and its parents when missing. Throws mil::Error naming the directory and `what` it is for
// ("the output directory") when it cannot be made or is not a directory.
void ensure_dir(const std::string& dir, const std::string& what);

// Whole file into memory; throws mil::Error naming the path when it cannot be read.
std::string read_file(const std::string& path);

}  // namespace mil::io
