#pragma once
// Small, strict HDF5 readers. Every failure is a mil::Error naming the file, the dataset and why.
#include <torch/torch.h>

#include <string>
#include <vector>

namespace mil::io {

// Shape of a dataset without reading its data.
std::vector<int64_t> h5_dataset_shape(const std::string& file, const std::string& dataset);

// A floating-point or integer dataset as a CPU float32 tensor of the dataset's shape (HDF5 converts
// float16/float64/ints on read).
torch::Tensor read_h5_float_tensor(const std::string& file, const std::string& dataset);

// A numeric scalar attribute of a group or dataset (`object` "/" for the root).
double read_h5_number_attribute(const std::string& file, const std::string& object, const std::string& attribute);

}  // namespace mil::io
