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
  std::string dtype_name() const;         // "float16", "float32", "int64", ... or "unsupported"
};

// One HDF5 file opened read-only.
class H5Reader {
 public:
  explicit H5Reader(const std::string& file);

  const std::string& file() const { return file_; }
  bool has(const std::string& dataset) const;
  H5DatasetInfo info(const std::string& dataset) const;
  // The dataset in its own dtype (float16 -> kHalf, float32 -> kFloat, float64 -> kDouble, integers -> kInt/kLong):
  // the bytes are copied as stored and any conversion is left to torch, which is faster than HDF5's.
  torch::Tensor read(const std::string& dataset) const;
  // read() converted to float32.
  torch::Tensor read_float(const std::string& dataset) const;
  // A numeric scalar attribute of a group or dataset (`object` "/" for the root).
  double number_attribute(const std::string& object, const std::string& attribute) const;

 private:
  H5::DataSet open(const std::string& dataset) const;
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
  void write_string_attribute(const std::string& name, const std::string& value);  // on the root group

 private:
  std::string file_;
  H5::H5File h5_;
};

}  // namespace mil::io
