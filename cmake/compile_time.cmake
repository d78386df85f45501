# Compile time. CI builds everything twice from scratch (Debian's libtorch and the CUDA wheel's), and a sanitizer
# build besides, on 2 cores.
#
# <torch/torch.h> as a precompiled header: parsing it is much of each translation unit's compile time. Measured
# on 2 cores: a library file 22 s, 14 s with the header precompiled; a test file 18 s, 12 s precompiled, 6 s
# precompiled at -O1.
# With ccache, set CCACHE_SLOPPINESS=pch_defines,time_macros for hits.
option(DSMIL_PCH "Precompile <torch/torch.h> for the library and the test suite" ON)

function(dsmil_precompile_torch target)
  if(DSMIL_PCH)
    target_precompile_headers(${target} PRIVATE <torch/torch.h>)
  endif()
endfunction()

# The library and the test suite as unity builds: batches of 8 sources compiled as one, so each batch
# instantiates libtorch's templates once. Measured (Debian, header precompiled), CPU time: the library 526 s ->
# 264 s, the tests 277 s -> 114 s. Files whose flags differ, and the hand-vectorised kernels (kept as their own
# objects, as benchmarked), are left out of the batches. A name defined in two sources' anonymous namespaces is
# an error here: give it one definition in a header, or a name of its own.
option(DSMIL_UNITY "Build the library and the test suite as unity builds" ON)

function(dsmil_unity target)
  if(DSMIL_UNITY)
    set_target_properties(${target} PROPERTIES UNITY_BUILD ON UNITY_BUILD_BATCH_SIZE 8)
  endif()
endfunction()
