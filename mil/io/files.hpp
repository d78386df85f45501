#pragma once
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace mil::io {

// Creates (or truncates) `path`, writes `bytes` and fsyncs it. Not atomic on its own: for files inside a
// directory that only becomes visible by a later rename (a checkpoint's hidden temporary directory).
// Throws mil::Error naming the path on any failure, and removes the partial file.
void write_file_synced(const std::string& path, std::string_view bytes);

// Replaces `path` with `bytes` so that a reader (or an S3 sync) never sees a partial file: write to a
// temporary file in the same directory, fsync it, rename it over `path`, fsync the directory.
// Throws mil::Error naming the path on any failure; the previous file, if any, is left intact.
void write_file_atomically(const std::string& path, std::string_view bytes);

// Creates `dir` and its parents when missing. Throws mil::Error naming the directory and `what` it is for
// ("the output directory") when it cannot be made or is not a directory.
void ensure_dir(const std::string& dir, const std::string& what);

// Start-up check of where a job will write: each (directory, what) is created with its parents and probed
// by writing, fsyncing and removing a small hidden file, so a file where a directory is expected, a
// read-only mount or a full disk is one mil::Error naming the directory and `what` ("model directory")
// before any training, not after hours. The probe is 64 KiB, so a disk with less room fails it.
void ensure_writable_directories(const std::vector<std::pair<std::string, std::string>>& dirs);

// Whole file into memory; throws mil::Error naming the path when it cannot be read.
std::string read_file(const std::string& path);

}  // namespace mil::io
