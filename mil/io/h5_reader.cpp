#include "mil/io/h5_reader.hpp"

#include <unistd.h>

#include <cerrno>
#include <filesystem>

#include "mil/util/error.hpp"

namespace mil::io {
namespace {

// IEEE 754 half precision, little-endian: the layout numpy/h5py write for float16 (HDF5 1.10 has no
// predefined type for it).
H5::FloatType half_type() {
  H5::FloatType t(H5::PredType::IEEE_F32LE);
  t.setFields(15, 10, 5, 0, 10);
  t.setOffset(0);
  t.setPrecision(16);
  t.setSize(2);
  t.setEbias(15);
  return t;
}

torch::ScalarType torch_type(const H5DatasetInfo& info) {
  if (info.type_class == H5T_FLOAT) {
    if (info.type_size == 2) return torch::kHalf;
    if (info.type_size == 4) return torch::kFloat;
    if (info.type_size == 8) return torch::kDouble;
  } else if (info.type_class == H5T_INTEGER) {
    if (info.type_size <= 4) return torch::kInt;
    if (info.type_size == 8) return torch::kLong;
  }
  return torch::kByte;  // sentinel: unsupported
}

H5::DataType memory_type(torch::ScalarType t) {
  switch (t) {
    case torch::kHalf:
      return half_type();
    case torch::kFloat:
      return H5::PredType::NATIVE_FLOAT;
    case torch::kDouble:
      return H5::PredType::NATIVE_DOUBLE;
    case torch::kInt:
      return H5::PredType::NATIVE_INT32;
    case torch::kLong:
      return H5::PredType::NATIVE_INT64;
    default:
      throw Error("unsupported tensor dtype for HDF5");
  }
}

}  // namespace

std::string H5DatasetInfo::dtype_name() const {
  if (type_class == H5T_FLOAT) return "float" + std::to_string(8 * type_size);
  if (type_class == H5T_INTEGER) return "int" + std::to_string(8 * type_size);
  return "unsupported";
}

H5Reader::H5Reader(const std::string& file) : file_(file) {
  H5::Exception::dontPrint();  // we report errors ourselves, once
  std::error_code ec;
  if (!std::filesystem::is_regular_file(file, ec)) throw Error(file, "", "no such file");
  if (::access(file.c_str(), R_OK) != 0) throw Error(file, "", "cannot read: " + errno_text());
  if (H5Fis_hdf5(file.c_str()) <= 0) throw Error(file, "", "not an HDF5 file (or truncated)");
  try {
    h5_.openFile(file, H5F_ACC_RDONLY);
  } catch (const H5::Exception& e) {
    throw Error(file, "", "cannot open HDF5 file (truncated or corrupt?): " + e.getDetailMsg());
  }
}

bool H5Reader::has(const std::string& dataset) const {
  try {
    return h5_.nameExists(dataset) && h5_.childObjType(dataset) == H5O_TYPE_DATASET;
  } catch (const H5::Exception&) {
    return false;
  }
}

H5::DataSet H5Reader::open(const std::string& dataset) const {
  if (!has(dataset)) throw Error(file_, dataset, "no such dataset");
  try {
    return h5_.openDataSet(dataset);
  } catch (const H5::Exception& e) {
    throw Error(file_, dataset, "cannot open dataset: " + e.getDetailMsg());
  }
}

H5DatasetInfo H5Reader::info(const std::string& dataset) const {
  H5::DataSet ds = open(dataset);
  try {
    H5DatasetInfo info;
    H5::DataSpace space = ds.getSpace();
    std::vector<hsize_t> dims(static_cast<size_t>(space.getSimpleExtentNdims()));
    space.getSimpleExtentDims(dims.data());
    info.shape.assign(dims.begin(), dims.end());
    info.type_class = ds.getTypeClass();
    info.type_size = ds.getDataType().getSize();
    return info;
  } catch (const H5::Exception& e) {
    throw Error(file_, dataset, "cannot read dataset header: " + e.getDetailMsg());
  }
}

torch::Tensor H5Reader::read(const std::string& dataset) const {
  const H5DatasetInfo meta = info(dataset);
  const torch::ScalarType type = torch_type(meta);
  if (type == torch::kByte) throw Error(file_, dataset, "unsupported dtype (" + meta.dtype_name() + ")");
  torch::Tensor out;
  try {
    out = torch::empty(meta.shape, type);
  } catch (const std::exception& e) {  // c10::Error from the allocator, or std::bad_alloc
    std::string shape;
    for (int64_t d : meta.shape) shape += (shape.empty() ? "" : " x ") + std::to_string(d);
    throw Error(file_, dataset, "cannot allocate " + shape + " " + meta.dtype_name() + ": out of memory");
  }
  if (out.numel() == 0) return out;
  try {
    open(dataset).read(out.data_ptr(), memory_type(type));
  } catch (const H5::Exception& e) {
    throw Error(file_, dataset, "read failed (truncated or corrupt file?): " + e.getDetailMsg());
  }
  return out;
}

torch::Tensor H5Reader::read_float(const std::string& dataset) const {
  return read(dataset).to(torch::kFloat);
}

double H5Reader::number_attribute(const std::string& object, const std::string& attribute) const {
  const std::string where = object + "@" + attribute;
  try {
    auto read_from = [&](const H5::H5Object& obj) {
      if (!obj.attrExists(attribute)) throw Error(file_, where, "no such attribute");
      double value = 0;
      obj.openAttribute(attribute).read(H5::PredType::NATIVE_DOUBLE, &value);
      return value;
    };
    if (object == "/" || h5_.childObjType(object) == H5O_TYPE_GROUP) return read_from(h5_.openGroup(object));
    return read_from(h5_.openDataSet(object));
  } catch (const H5::Exception& e) {
    throw Error(file_, where, "cannot read attribute: " + e.getDetailMsg());
  }
}

torch::Tensor read_h5_float_tensor(const std::string& file, const std::string& dataset) {
  return H5Reader(file).read_float(dataset);
}

double read_h5_number_attribute(const std::string& file, const std::string& object, const std::string& attribute) {
  return H5Reader(file).number_attribute(object, attribute);
}

H5Writer::H5Writer(const std::string& file) : file_(file) {
  H5::Exception::dontPrint();
  try {
    h5_ = H5::H5File(file, H5F_ACC_TRUNC);
  } catch (const H5::Exception& e) {
    throw Error(file, "", "cannot create HDF5 file: " + e.getDetailMsg());
  }
}

void H5Writer::write(const std::string& dataset, const torch::Tensor& tensor) {
  const torch::Tensor t = tensor.detach().cpu().contiguous();
  std::vector<hsize_t> dims(t.sizes().begin(), t.sizes().end());
  try {
    H5::DataSpace space(static_cast<int>(dims.size()), dims.data());
    const H5::DataType type = memory_type(t.scalar_type());
    H5::DataSet ds = h5_.createDataSet(dataset, type, space);
    if (t.numel() > 0) ds.write(t.data_ptr(), type);
  } catch (const H5::Exception& e) {
    throw Error(file_, dataset, "write failed: " + e.getDetailMsg());
  }
}

void H5Writer::write_string_attribute(const std::string& name, const std::string& value) {
  try {
    H5::StrType type(H5::PredType::C_S1, H5T_VARIABLE);
    H5::Attribute attr = h5_.openGroup("/").createAttribute(name, type, H5::DataSpace(H5S_SCALAR));
    attr.write(type, value);
  } catch (const H5::Exception& e) {
    throw Error(file_, name, "cannot write attribute: " + e.getDetailMsg());
  }
}

}  // namespace mil::io
