#include "mil/io/tensorboard_writer.hpp"

#include <isa-l/crc.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <climits>
#include <ctime>
#include <filesystem>

#include "mil/io/files.hpp"
#include "mil/io/tensorboard_event.pb.h"
#include "mil/util/error.hpp"

namespace mil::io {
namespace {

namespace fs = std::filesystem;

double unix_seconds_now() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

std::string host_name() {
  char name[256] = {};
  if (::gethostname(name, sizeof(name) - 1) != 0 || name[0] == '\0') return "localhost";
  return name;
}

void append_le(std::string& out, uint64_t value, int bytes) {
  for (int i = 0; i < bytes; ++i) out.push_back(static_cast<char>((value >> (8 * i)) & 0xff));
}

}  // namespace

uint32_t masked_crc32c(std::string_view data) {
  // ISA-L's crc32_iscsi neither inverts the initial value nor the result: CRC32C = ~crc32_iscsi(data, ~0).
  // It takes an int length, so longer data goes in pieces.
  uint32_t state = 0xffffffffu;
  auto* p = reinterpret_cast<unsigned char*>(const_cast<char*>(data.data()));
  size_t left = data.size();
  do {
    const int n = static_cast<int>(std::min<size_t>(left, INT_MAX));
    state = crc32_iscsi(p, n, state);
    p += n;
    left -= static_cast<size_t>(n);
  } while (left > 0);
  const uint32_t crc = ~state;
  return ((crc >> 15) | (crc << 17)) + 0xa282ead8u;
}

TensorBoardWriter::TensorBoardWriter(const std::string& dir) {
  ensure_dir(dir, "the TensorBoard directory");
  // TensorFlow's name, plus a counter when a file of this second already exists (a quick restart).
  const std::string base =
      (fs::path(dir) / ("events.out.tfevents." + std::to_string(std::time(nullptr)) + "." + host_name())).string();
  for (int attempt = 0; file_ == nullptr; ++attempt) {
    path_ = attempt == 0 ? base : base + "." + std::to_string(attempt);
    // "x": never append to or truncate another writer's file.
    file_ = std::fopen(path_.c_str(), "wbx");
    if (file_ == nullptr && (errno != EEXIST || attempt >= 100)) {
      throw Error(path_, "", "cannot create the TensorBoard event file: " + errno_text());
    }
  }
  dsmil::tb::Event event;
  event.set_wall_time(unix_seconds_now());
  event.set_file_version("brain.Event:2");
  try {
    write_record(event.SerializeAsString());
    flush();
  } catch (...) {
    std::fclose(file_);  // no destructor runs for a constructor that throws
    throw;
  }
}

TensorBoardWriter::~TensorBoardWriter() {
  if (file_ != nullptr) std::fclose(file_);
}

void TensorBoardWriter::add_scalar(const std::string& tag, double value, int64_t step) {
  dsmil::tb::Event event;
  event.set_wall_time(unix_seconds_now());
  event.set_step(step);
  dsmil::tb::Summary::Value* v = event.mutable_summary()->add_value();
  v->set_tag(tag);
  v->set_simple_value(static_cast<float>(value));
  write_record(event.SerializeAsString());
}

void TensorBoardWriter::flush() {
  if (std::fflush(file_) != 0) throw Error(path_, "", "write failed: " + errno_text());
}

void TensorBoardWriter::write_record(const std::string& data) {
  std::string header;
  append_le(header, data.size(), 8);
  std::string record = header;
  append_le(record, masked_crc32c(header), 4);
  record += data;
  append_le(record, masked_crc32c(data), 4);
  if (std::fwrite(record.data(), 1, record.size(), file_) != record.size()) {
    throw Error(path_, "", "write failed: " + errno_text());
  }
}

TensorBoardLog::TensorBoardLog(const std::string& dir) : path_(dir) {
  try {
    writer_ = std::make_unique<TensorBoardWriter>(dir);
    path_ = writer_->path();
  } catch (const Error& e) {
    disable(e.what());
  }
}

void TensorBoardLog::add_scalar(const std::string& tag, double value, int64_t step) {
  if (!writer_) return;
  try {
    writer_->add_scalar(tag, value, step);
  } catch (const Error& e) {
    disable(e.what());
  }
}

void TensorBoardLog::flush() {
  if (!writer_) return;
  try {
    writer_->flush();
  } catch (const Error& e) {
    disable(e.what());
  }
}

void TensorBoardLog::disable(const std::string& why) {
  spdlog::warn("[train] TensorBoard events off for the rest of the job: {}", why);
  writer_.reset();
}

}  // namespace mil::io
