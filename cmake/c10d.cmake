# c10d back ends for `--comm gloo|nccl` (mil/dist/c10d_communicator.cpp). Each is compiled in only when a
# small program using it compiles and links against this libtorch, so a libtorch without c10d, Gloo or
# NCCL still builds dsmil (the option then says the back end is missing). The USE_C10D_* macros the c10d
# headers need, and the DSMIL_HAVE_* ones, go on that one source file only.
include(CheckCXXSourceCompiles)

# Gloo's headers must match the Gloo inside libtorch: Debian's libtorch 1.13 and libgloo-dev are built from
# one Gloo snapshot, both under /usr/include. PyPI's torch wheel exports ProcessGroupGloo but ships no Gloo
# headers, and Debian's (older) ones would not match its ABI: look only next to torch's own headers.
find_path(DSMIL_GLOO_INCLUDE_DIR gloo/algorithm.h PATHS ${TORCH_INCLUDE_DIRS} NO_DEFAULT_PATH)
# NCCL: a CUDA libtorch; the wheel's nccl.h lives in site-packages/nvidia/nccl/include, next to torch/.
if(TARGET torch_cuda)
  get_filename_component(_dsmil_site_packages "${Torch_DIR}/../../../.." ABSOLUTE)
  find_path(DSMIL_NCCL_INCLUDE_DIR nccl.h HINTS "${_dsmil_site_packages}/nvidia/nccl/include" ENV CUDA_HOME
            PATH_SUFFIXES include)
endif()

# The check links torch's library files, not its imported targets: the wheel's targets name others
# (protobuf::libprotobuf) that a try_compile project does not define.
get_filename_component(_dsmil_torch_lib_dir "${TORCH_LIBRARY}" DIRECTORY)
set(_dsmil_torch_files)
foreach(_name torch torch_cpu c10 torch_cuda c10_cuda)
  find_library(_dsmil_lib_${_name} ${_name} PATHS "${_dsmil_torch_lib_dir}" NO_DEFAULT_PATH)
  if(_dsmil_lib_${_name})
    list(APPEND _dsmil_torch_files "${_dsmil_lib_${_name}}")
  endif()
endforeach()

function(dsmil_check_c10d result macro header class include_dir)
  set(CMAKE_REQUIRED_DEFINITIONS -D${macro})
  set(CMAKE_REQUIRED_INCLUDES ${TORCH_INCLUDE_DIRS} ${CUDAToolkit_INCLUDE_DIRS} ${include_dir})
  set(CMAKE_REQUIRED_LIBRARIES ${_dsmil_torch_files})
  set(CMAKE_REQUIRED_FLAGS "${TORCH_CXX_FLAGS}")
  # libtorch 2.x asks for C++20 through its target's compile features, which the plain files do not carry.
  get_target_property(_features torch INTERFACE_COMPILE_FEATURES)
  if(_features AND "cxx_std_20" IN_LIST _features)
    set(CMAKE_CXX_STANDARD 20)
  endif()
  check_cxx_source_compiles("
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#include <torch/csrc/distributed/c10d/${header}>
int main() {
  c10d::TCPStoreOptions opts;
  auto store = c10::make_intrusive<c10d::TCPStore>(\"127.0.0.1\", opts);
  auto pg = c10::make_intrusive<c10d::${class}>(store, 0, 1, c10d::${class}::Options::create());
  return pg->getRank();
}" ${result})
endfunction()

if(DSMIL_GLOO_INCLUDE_DIR)
  dsmil_check_c10d(DSMIL_HAVE_C10D_GLOO USE_C10D_GLOO ProcessGroupGloo.hpp ProcessGroupGloo "${DSMIL_GLOO_INCLUDE_DIR}")
endif()
if(DSMIL_NCCL_INCLUDE_DIR)
  dsmil_check_c10d(DSMIL_HAVE_C10D_NCCL USE_C10D_NCCL ProcessGroupNCCL.hpp ProcessGroupNCCL "${DSMIL_NCCL_INCLUDE_DIR}")
endif()

set(_dsmil_c10d_source ${CMAKE_CURRENT_SOURCE_DIR}/dist/c10d_communicator.cpp)
if(DSMIL_HAVE_C10D_GLOO)
  # Its headers are among torch's include folders (found there only), already on mil's include path.
  set_property(SOURCE ${_dsmil_c10d_source} APPEND PROPERTY COMPILE_DEFINITIONS DSMIL_HAVE_C10D_GLOO USE_C10D_GLOO)
endif()
if(DSMIL_HAVE_C10D_NCCL)
  set_property(SOURCE ${_dsmil_c10d_source} APPEND PROPERTY COMPILE_DEFINITIONS DSMIL_HAVE_C10D_NCCL USE_C10D_NCCL)
  set_property(SOURCE ${_dsmil_c10d_source} APPEND PROPERTY INCLUDE_DIRECTORIES ${DSMIL_NCCL_INCLUDE_DIR})
endif()
set(_dsmil_c10d_found)
foreach(_backend GLOO NCCL)
  if(DSMIL_HAVE_C10D_${_backend})
    list(APPEND _dsmil_c10d_found ${_backend})
  endif()
endforeach()
if(NOT _dsmil_c10d_found)
  set(_dsmil_c10d_found "none")
endif()
message(STATUS "c10d back ends for --comm gloo|nccl: ${_dsmil_c10d_found}")
