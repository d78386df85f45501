#pragma once
// TensorBoard event files written without TensorFlow: Event protos (tensorboard_event.proto) framed as
// TFRecords, each record being
//   uint64 length (little endian), uint32 masked CRC32C of those 8 bytes, data, uint32 masked CRC32C of data.
// TensorBoard checks both CRCs and reads a file while it grows, so a running job shows up live.
#include <cstdint>
#include <cstdio>
#include <memory>
#include <string>
#include <string_view>

namespace mil::io {

class TensorBoardWriter {
 public:
  // Creates `dir` (with its parents) and a new file events.out.tfevents.<unix seconds>.<hostname> in it, as
  // TensorFlow names them, starting with the file-version event. Throws mil::Error naming the directory or file.
  explicit TensorBoardWriter(const std::string& dir);
  ~TensorBoardWriter();  // closes the file; a failure to flush then is ignored (call flush() to see it)
  TensorBoardWriter(const TensorBoardWriter&) = delete;
  TensorBoardWriter& operator=(const TensorBoardWriter&) = delete;

  // One scalar event, stored as float32 (TensorBoard's simple_value). Buffered until flush().
  void add_scalar(const std::string& tag, double value, int64_t step);
  // Hands the buffered records to the OS, so that a TensorBoard watching the directory sees them.
  void flush();
  const std::string& path() const { return path_; }

 private:
  void write_record(const std::string& data);

  std::string path_;
  std::FILE* file_ = nullptr;
};

// What a training job uses: a TensorBoardWriter whose failures are warnings. TensorBoard curves are a view
// of the job, not its product, so a directory that cannot be created, a full disk or a lost mount logs one
// warning naming the file and turns the events off; training goes on.
class TensorBoardLog {
 public:
  explicit TensorBoardLog(const std::string& dir);
  void add_scalar(const std::string& tag, double value, int64_t step);
  void flush();
  bool enabled() const { return writer_ != nullptr; }
  const std::string& path() const { return path_; }  // the event file, or the directory when disabled

 private:
  void disable(const std::string& why);
  std::unique_ptr<TensorBoardWriter> writer_;
  std::string path_;
};

// TFRecord's checksum: CRC32C (Castagnoli), rotated right by 15 bits plus 0xa282ead8, so that the CRC of
// data holding CRCs is not trivially zero.
uint32_t masked_crc32c(std::string_view data);

}  // namespace mil::io
