#pragma once
// Small, strict HDF5 access. Every failure is a mil::Error naming the file, the dataset and why.
#include <H5Cpp.h>
#include <torch/torch.h>

#include <string>
#include <vector>

namespace mil::io {

struct H5DatasetInfo {
  std::vector<int64_t> shape;
  H5T_class_t type_class = H5T_NO_CLASS;  // H5T_FLOAT, H5T_INTEGER, ...
  size_t type_size = 0;                   // bytes per element
  std::vector<int64_t> chunk;             // chunk shape; empty when the dataset is not chunked
  int filters = 0;                        // filters (compression, shuffle...) applied to its chunks
  std::string dtype_name() const;         // "float16", "float32", "int64", ... or "unsupported"
};

// One HDF5 file opened read-only.
class H5Reader {
 public:
  // in_memory: the whole file is read into memory in one pass when opened (HDF5's core driver), so a dataset
  // stored as thousands of small chunks costs no system call per chunk.
  explicit H5Reader(const std::string& file, bool in_memory = false);

  const std::string& file() const { return file_; }
  bool has(const std::string& dataset) const;
  H5DatasetInfo info(const std::string& dataset) const;
  // The dataset in its own dtype (float16 -> kHalf, float32 -> kFloat, float64 -> kDouble, integers -> kInt/kLong):
  // the bytes are copied as stored and any conversion is left to the caller, which is faster than HDF5's.
  // Datasets chunked by whole rows (CLAM's extractor writes one chunk per instance) are read chunk by chunk
  // straight into the tensor, bypassing HDF5's per-chunk selection machinery (~5x faster); the bytes are
  // the same as HDF5's own read gives.
  torch::Tensor read(const std::string& dataset) const;
  // read() converted to float32.
  torch::Tensor read_float(const std::string& dataset) const;
  // A numeric scalar attribute of a group or dataset (`object` "/" for the root).
  double number_attribute(const std::string& object, const std::string& attribute) const;

 private:
  H5::DataSet open(const std::string& dataset) const;
  H5DatasetInfo info_of(const H5::DataSet& ds, const std::string& dataset) const;
  void check_chunk_index(const H5::DataSet& ds, const std::string& dataset, const H5DatasetInfo& meta) const;
  std::string file_;
  H5::H5File h5_;
};

// One-shot conveniences.
torch::Tensor read_h5_float_tensor(const std::string& file, const std::string& dataset);
double read_h5_number_attribute(const std::string& file, const std::string& object, const std::string& attribute);

// Writes tensors (float16/32/64, int32/64) as HDF5 datasets; float16 uses the IEEE half layout h5py writes.
class H5Writer {
 public:
  explicit H5Writer(const std::string& file);  // creates or truncates
  void write(const std::string& dataset, const torch::Tensor& tensor);
  // Writes `tensor` the way CLAM's feature extractor (and h5py's `resize` + slice assignment) does: chunks of
  // (chunk_rows, rest of the shape), an unlimited first dimension, extended and written `batch_rows` rows at
  // a time. CLAM's files use chunk_rows = 1: one chunk, and one chunk-index entry, per instance.
  void write_appended(const std::string& dataset, const torch::Tensor& tensor, int64_t chunk_rows, int64_t batch_rows);
  void write_string_attribute(const std::string& name, const std::string& value);  // on the root group

 private:
  std::string file_;
  H5::H5File h5_;
};

}  // namespace mil::io
