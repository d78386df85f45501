#include "mil/io/h5_reader.hpp"

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstring>
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

// Reads a dataset chunked by whole rows (chunk shape (k, rest of the shape)), stored unfiltered in the
// memory layout of `type`, one raw chunk at a time into `out`. Returns false, having read nothing usable,
// when the layout does not allow it or HDF5 declines a chunk (not allocated, unexpected size): the caller
// then reads the ordinary way, which also reports corruption properly.
bool read_row_chunks(const H5::DataSet& ds, const H5DatasetInfo& meta, const H5::DataType& type, torch::Tensor& out) {
  if (meta.chunk.empty() || meta.filters != 0 || meta.shape.empty() || meta.chunk[0] < 1) return false;
  for (size_t d = 1; d < meta.shape.size(); ++d) {
    if (meta.chunk[d] != meta.shape[d]) return false;
  }
  if (H5Tequal(ds.getDataType().getId(), type.getId()) <= 0) return false;
  const int64_t rows = meta.shape[0];
  const int64_t chunk_rows = meta.chunk[0];
  const int64_t row_bytes = out.nbytes() / rows;
  const hsize_t chunk_bytes = static_cast<hsize_t>(chunk_rows * row_bytes);
  std::vector<hsize_t> offset(meta.shape.size(), 0);
  std::vector<char> partial;  // the last chunk when it extends past the end of the dataset
  auto* dst = static_cast<char*>(out.data_ptr());
  for (int64_t first = 0; first < rows; first += chunk_rows) {
    offset[0] = static_cast<hsize_t>(first);
    // An unfiltered chunk's bytes are exactly chunk_bytes; a file claiming otherwise goes the ordinary way
    // (H5Dread_chunk writes whatever size is stored, so this check keeps it inside the buffer).
    hsize_t stored = 0;
    if (H5Dget_chunk_storage_size(ds.getId(), offset.data(), &stored) < 0 || stored != chunk_bytes) return false;
    const int64_t n = std::min(chunk_rows, rows - first);
    char* target = dst + first * row_bytes;
    if (n < chunk_rows) {
      partial.resize(chunk_bytes);
      target = partial.data();
    }
    uint32_t filter_mask = 0;
    if (H5Dread_chunk(ds.getId(), H5P_DEFAULT, offset.data(), &filter_mask, target) < 0) return false;
    if (n < chunk_rows) std::memcpy(dst + first * row_bytes, partial.data(), static_cast<size_t>(n * row_bytes));
  }
  return true;
}

// The description HDF5 recorded where an open failed (the innermost entry of its error stack), e.g. "unable
// to lock file, errno = 37, ..." on a file system without locks: H5::Exception's own text is only the API
// call that failed. Empty when the stack holds nothing (any HDF5 call since the failure clears it).
std::string innermost_hdf5_error() {
  std::string reason;
  const auto first = [](unsigned n, const H5E_error2_t* err, void* out) -> herr_t {
    if (n == 0 && err->desc != nullptr) *static_cast<std::string*>(out) = err->desc;
    return 0;
  };
  H5Ewalk2(H5E_DEFAULT, H5E_WALK_UPWARD, first, &reason);
  return reason;
}

}  // namespace

std::string H5DatasetInfo::dtype_name() const {
  if (type_class == H5T_FLOAT) return "float" + std::to_string(8 * type_size);
  if (type_class == H5T_INTEGER) return "int" + std::to_string(8 * type_size);
  return "unsupported";
}

H5Reader::H5Reader(const std::string& file, bool in_memory) : file_(file) {
  H5::Exception::dontPrint();  // we report errors ourselves, once
  std::error_code ec;
  if (!std::filesystem::is_regular_file(file, ec)) throw Error(file, "", "no such file");
  if (::access(file.c_str(), R_OK) != 0) throw Error(file, "", "cannot read: " + errno_text());
  if (H5Fis_hdf5(file.c_str()) <= 0) throw Error(file, "", "not an HDF5 file (or truncated)");
  // Outside the try: its destructor (an HDF5 call) would clear the error stack before the catch reads it.
  H5::FileAccPropList access;
  try {
    if (in_memory) access.setCore(1 << 20, false);  // read-only: no backing store is written
    h5_.openFile(file, H5F_ACC_RDONLY, access);
  } catch (const H5::Exception& e) {
    // HDF5's own reason when it gave one (a lock refused is no corruption), else a guess.
    const std::string reason = innermost_hdf5_error();
    if (!reason.empty()) throw Error(file, "", "cannot open HDF5 file: " + e.getDetailMsg() + ": " + reason);
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
  return info_of(open(dataset), dataset);
}

H5DatasetInfo H5Reader::info_of(const H5::DataSet& ds, const std::string& dataset) const {
  try {
    H5DatasetInfo info;
    H5::DataSpace space = ds.getSpace();
    std::vector<hsize_t> dims(static_cast<size_t>(space.getSimpleExtentNdims()));
    space.getSimpleExtentDims(dims.data());
    info.shape.assign(dims.begin(), dims.end());
    info.type_class = ds.getTypeClass();
    info.type_size = ds.getDataType().getSize();
    const H5::DSetCreatPropList props = ds.getCreatePlist();
    if (props.getLayout() == H5D_CHUNKED) {
      std::vector<hsize_t> chunk(H5S_MAX_RANK);
      const int rank = props.getChunk(static_cast<int>(chunk.size()), chunk.data());
      // HDF5 writes no such file, and reading one kept it busy for minutes (a scalar dataspace with 2-d
      // chunks; found by fuzz_h5): a corrupt header.
      if (rank != static_cast<int>(dims.size())) {
        throw Error(file_, dataset,
                    "corrupt header: chunks of rank " + std::to_string(rank) + " for a dataset of rank " +
                        std::to_string(dims.size()));
      }
      info.chunk.assign(chunk.begin(), chunk.begin() + rank);
      info.filters = props.getNfilters();
    }
    return info;
  } catch (const H5::Exception& e) {
    throw Error(file_, dataset, "cannot read dataset header: " + e.getDetailMsg());
  }
}

torch::Tensor H5Reader::read(const std::string& dataset) const {
  const H5::DataSet ds = open(dataset);
  const H5DatasetInfo meta = info_of(ds, dataset);
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
  check_chunk_index(ds, dataset, meta);
  try {
    const H5::DataType mem_type = memory_type(type);
    if (!read_row_chunks(ds, meta, mem_type, out)) ds.read(out.data_ptr(), mem_type);
  } catch (const H5::Exception& e) {
    throw Error(file_, dataset, "read failed (truncated or corrupt file?): " + e.getDetailMsg());
  }
  return out;
}

// Unfiltered chunks each hold exactly one chunk's bytes, so their total cannot exceed the chunks the shape
// spans. A chunk index that records more is corrupt, and HDF5 1.10 reads past its own buffer on such a file
// (found by fuzz_h5: an ASan report inside H5Dread); filtered chunks have no such bound.
void H5Reader::check_chunk_index(const H5::DataSet& ds, const std::string& dataset, const H5DatasetInfo& meta) const {
  if (meta.chunk.empty() || meta.filters != 0) return;
  long double most = static_cast<long double>(meta.type_size);
  for (size_t i = 0; i < meta.shape.size(); ++i) {
    const auto c = static_cast<long double>(meta.chunk[i]);
    most *= std::ceil(static_cast<long double>(meta.shape[i]) / c) * c;
  }
  hsize_t stored = 0;
  try {
    stored = ds.getStorageSize();
  } catch (const H5::Exception& e) {
    throw Error(file_, dataset, "cannot read the chunk index: " + e.getDetailMsg());
  }
  if (static_cast<long double>(stored) > most) {
    throw Error(file_, dataset,
                "corrupt chunk index: its chunks hold " + std::to_string(stored) + " bytes, more than the " +
                    std::to_string(static_cast<uint64_t>(most)) + " that unfiltered chunks of this shape can");
  }
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

void H5Writer::write_appended(const std::string& dataset, const torch::Tensor& tensor, int64_t chunk_rows,
                              int64_t batch_rows) {
  const torch::Tensor t = tensor.detach().cpu().contiguous();
  if (t.dim() < 1 || chunk_rows < 1 || batch_rows < 1) throw Error(file_, dataset, "bad appended-write request");
  std::vector<hsize_t> dims(t.sizes().begin(), t.sizes().end());
  std::vector<hsize_t> max_dims = dims;
  max_dims[0] = H5S_UNLIMITED;
  std::vector<hsize_t> chunk = dims;
  chunk[0] = static_cast<hsize_t>(chunk_rows);
  for (size_t i = 1; i < chunk.size(); ++i) chunk[i] = std::max<hsize_t>(1, chunk[i]);
  const hsize_t n = dims[0];
  try {
    const H5::DataType type = memory_type(t.scalar_type());
    H5::DSetCreatPropList props;
    props.setChunk(static_cast<int>(chunk.size()), chunk.data());
    std::vector<hsize_t> first = dims;
    first[0] = std::min<hsize_t>(n, static_cast<hsize_t>(batch_rows));
    H5::DataSet ds = h5_.createDataSet(
        dataset, type, H5::DataSpace(static_cast<int>(dims.size()), first.data(), max_dims.data()), props);
    const int64_t row_bytes = t.numel() == 0 ? 0 : t.nbytes() / t.size(0);
    for (hsize_t start = 0; start < n; start += static_cast<hsize_t>(batch_rows)) {
      std::vector<hsize_t> extent = dims;
      extent[0] = std::min<hsize_t>(n, start + static_cast<hsize_t>(batch_rows));
      ds.extend(extent.data());  // a no-op for the first batch, as h5py's create_dataset(data=batch)
      std::vector<hsize_t> offset(dims.size(), 0), count = dims;
      offset[0] = start;
      count[0] = extent[0] - start;
      H5::DataSpace file_space = ds.getSpace();
      file_space.selectHyperslab(H5S_SELECT_SET, count.data(), offset.data());
      H5::DataSpace mem_space(static_cast<int>(count.size()), count.data());
      ds.write(static_cast<const char*>(t.data_ptr()) + static_cast<int64_t>(start) * row_bytes, type, mem_space,
               file_space);
    }
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
