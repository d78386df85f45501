#include "mil/io/h5_reader.hpp"

#include <H5Cpp.h>

#include <filesystem>

#include "mil/util/error.hpp"

namespace mil::io {
namespace {

H5::H5File open_file(const std::string& file) {
  H5::Exception::dontPrint();  // we report errors ourselves, once
  if (!std::filesystem::is_regular_file(file)) throw Error(file, "", "no such file");
  if (H5::H5File::isHdf5(file) <= 0) throw Error(file, "", "not an HDF5 file");
  try {
    return H5::H5File(file, H5F_ACC_RDONLY);
  } catch (const H5::Exception& e) {
    throw Error(file, "", "cannot open HDF5 file: " + e.getDetailMsg());
  }
}

H5::DataSet open_dataset(const H5::H5File& f, const std::string& file, const std::string& dataset) {
  if (!f.nameExists(dataset)) throw Error(file, dataset, "no such dataset");
  try {
    return f.openDataSet(dataset);
  } catch (const H5::Exception& e) {
    throw Error(file, dataset, "cannot open dataset: " + e.getDetailMsg());
  }
}

std::vector<int64_t> shape_of(const H5::DataSet& ds) {
  H5::DataSpace space = ds.getSpace();
  std::vector<hsize_t> dims(static_cast<size_t>(space.getSimpleExtentNdims()));
  space.getSimpleExtentDims(dims.data());
  return std::vector<int64_t>(dims.begin(), dims.end());
}

}  // namespace

std::vector<int64_t> h5_dataset_shape(const std::string& file, const std::string& dataset) {
  H5::H5File f = open_file(file);
  return shape_of(open_dataset(f, file, dataset));
}

torch::Tensor read_h5_float_tensor(const std::string& file, const std::string& dataset) {
  H5::H5File f = open_file(file);
  H5::DataSet ds = open_dataset(f, file, dataset);
  const H5T_class_t cls = ds.getTypeClass();
  if (cls != H5T_FLOAT && cls != H5T_INTEGER) throw Error(file, dataset, "not a numeric dataset");
  torch::Tensor out = torch::empty(shape_of(ds), torch::kFloat32);
  try {
    if (out.numel() > 0) ds.read(out.data_ptr<float>(), H5::PredType::NATIVE_FLOAT);
  } catch (const H5::Exception& e) {
    throw Error(file, dataset, "read failed: " + e.getDetailMsg());
  }
  return out;
}

double read_h5_number_attribute(const std::string& file, const std::string& object, const std::string& attribute) {
  H5::H5File f = open_file(file);
  try {
    H5::H5Object* obj = nullptr;
    H5::Group group;
    H5::DataSet ds;
    if (object == "/" || f.childObjType(object) == H5O_TYPE_GROUP) {
      group = f.openGroup(object);
      obj = &group;
    } else {
      ds = f.openDataSet(object);
      obj = &ds;
    }
    if (!obj->attrExists(attribute)) throw Error(file, object + "@" + attribute, "no such attribute");
    double value = 0;
    obj->openAttribute(attribute).read(H5::PredType::NATIVE_DOUBLE, &value);
    return value;
  } catch (const H5::Exception& e) {
    throw Error(file, object + "@" + attribute, "cannot read attribute: " + e.getDetailMsg());
  }
}

}  // namespace mil::io
