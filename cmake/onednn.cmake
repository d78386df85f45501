# The step's products (fp32 and bf16) straight through oneDNN (mil/model/onednn_matmul.cpp), where libtorch
# itself links the system's libdnnl (Debian's libtorch 1.13 links libdnnl.so.2): the same library and one
# OpenMP pool. PyPI's wheel builds its own oneDNN into libtorch_cpu; there it stays off and MixedGemm uses
# at::mm.
# Needs _dsmil_lib_torch_cpu (cmake/c10d.cmake finds it).
find_path(DSMIL_DNNL_INCLUDE_DIR oneapi/dnnl/dnnl.hpp)
find_library(DSMIL_DNNL_LIBRARY dnnl)
set(DSMIL_ONEDNN OFF)
find_program(DSMIL_READELF readelf)
if(DSMIL_DNNL_INCLUDE_DIR AND DSMIL_DNNL_LIBRARY AND DSMIL_READELF AND _dsmil_lib_torch_cpu)
  # The soname libtorch_cpu needs, and the one of the library found: equal, or oneDNN stays off.
  execute_process(COMMAND ${DSMIL_READELF} -d ${_dsmil_lib_torch_cpu} OUTPUT_VARIABLE _dsmil_torch_needed)
  execute_process(COMMAND ${DSMIL_READELF} -d ${DSMIL_DNNL_LIBRARY} OUTPUT_VARIABLE _dsmil_dnnl_dynamic)
  string(REGEX MATCH "Library soname: \\[(libdnnl\\.so\\.[0-9]+)\\]" _dsmil_match "${_dsmil_dnnl_dynamic}")
  set(_dsmil_dnnl_soname "${CMAKE_MATCH_1}")
  if(_dsmil_dnnl_soname AND _dsmil_torch_needed MATCHES "NEEDED.*\\[${_dsmil_dnnl_soname}\\]")
    set(DSMIL_ONEDNN ON)
  endif()
endif()
if(DSMIL_ONEDNN)
  message(STATUS "dsmil: the step's products through oneDNN (${_dsmil_dnnl_soname}, as libtorch links it)")
  set_source_files_properties(model/onednn_matmul.cpp PROPERTIES COMPILE_DEFINITIONS DSMIL_HAVE_ONEDNN=1
                                                            SKIP_UNITY_BUILD_INCLUSION ON)
  target_include_directories(mil SYSTEM PRIVATE ${DSMIL_DNNL_INCLUDE_DIR})
  target_link_libraries(mil PRIVATE ${DSMIL_DNNL_LIBRARY})
else()
  message(STATUS "dsmil: the step's products through at::mm (libtorch does not link the system's oneDNN)")
endif()
