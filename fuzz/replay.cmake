# Included from tests/CMakeLists.txt: the fuzz targets built into one ordinary binary (each entry function
# under a name of its own) and replayed over their committed corpus, tests/fuzz/corpus/<target>/: the seeds
# and every input a fuzzer found a bug with. Runs in the GCC build and in the sanitizer build (label unit).
set(DSMIL_FUZZ_TARGETS csv torch_archive checkpoint hyperparameters resourceconfig h5)
add_executable(dsmil_fuzz_replay ${PROJECT_SOURCE_DIR}/fuzz/replay_main.cpp ${PROJECT_SOURCE_DIR}/fuzz/make_seeds.cpp
                                 ${PROJECT_SOURCE_DIR}/fuzz/fuzz_support.cpp)
target_link_libraries(dsmil_fuzz_replay PRIVATE mil)
target_compile_options(dsmil_fuzz_replay PRIVATE ${DSMIL_WARNINGS})
foreach(target ${DSMIL_FUZZ_TARGETS})
  set(source ${PROJECT_SOURCE_DIR}/fuzz/fuzz_${target}.cpp)
  target_sources(dsmil_fuzz_replay PRIVATE ${source})
  set_source_files_properties(${source} PROPERTIES COMPILE_DEFINITIONS DSMIL_FUZZ_ENTRY=fuzz_${target})
  add_test(NAME fuzz_regression.${target}
           COMMAND dsmil_fuzz_replay ${target} ${CMAKE_CURRENT_SOURCE_DIR}/fuzz/corpus/${target})
  set_tests_properties(fuzz_regression.${target} PROPERTIES LABELS unit TIMEOUT 120)
endforeach()
