# Finds Brisk's dependencies. A missing one stops configure with the Debian package to install.
find_package(PkgConfig)
if(NOT PKG_CONFIG_FOUND)
  message(FATAL_ERROR "pkg-config not found: install it with 'apt-get install pkg-config'")
endif()

macro(brisk_require_pkg var module package)
  pkg_check_modules(${var} IMPORTED_TARGET ${module})
  if(NOT ${var}_FOUND)
    message(FATAL_ERROR "${module} not found: install it with 'apt-get install ${package}'")
  endif()
endmacro()

# Brisk's own matrix products (core/src/gemm.c) need no BLAS. OpenBLAS serves only as the
# independent reference the tests compare them with and the benchmarks measure them against.
if(BRISK_BUILD_TESTS OR BRISK_BUILD_BENCH)
  brisk_require_pkg(OPENBLAS openblas libopenblas-dev)
endif()

set(THREADS_PREFER_PTHREAD_FLAG ON)
find_package(Threads REQUIRED)

find_package(ZLIB)
if(NOT ZLIB_FOUND)
  message(FATAL_ERROR "zlib not found: install it with 'apt-get install zlib1g-dev'")
endif()

brisk_require_pkg(PROTOBUF_C libprotobuf-c libprotobuf-c-dev)
# Checkpoint headers (safetensors' JSON) are parsed with a maintained library, not by hand.
brisk_require_pkg(CJSON libcjson libcjson-dev)
find_program(BRISK_PROTOC_C protoc-c)
if(NOT BRISK_PROTOC_C)
  message(FATAL_ERROR "protoc-c not found: install it with 'apt-get install protobuf-c-compiler'")
endif()

if(BRISK_BUILD_TESTS)
  brisk_require_pkg(CMOCKA cmocka libcmocka-dev)
endif()

find_library(BRISK_LIBM m)

# Open MPI for several processes (optional): BRISK_MPI defaults to ON when it is found.
find_package(MPI COMPONENTS C QUIET)
option(BRISK_MPI "Build the MPI backend (needs libopenmpi-dev)" ${MPI_C_FOUND})
if(BRISK_MPI AND NOT MPI_C_FOUND)
  message(FATAL_ERROR "BRISK_MPI=ON but MPI was not found: install it with 'apt-get install libopenmpi-dev openmpi-bin'")
endif()
