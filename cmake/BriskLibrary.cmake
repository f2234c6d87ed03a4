# The libraries, assembled from the modules' object files (core/, logging/, parallel/):
#
#   brisk_internal, brisk_internal_mpi   static, for the programs and tests of this tree
#   brisk, brisk_mpi                     installed: static, or shared with BUILD_SHARED_LIBS
#                                        (then only the public API is exported)
#
# brisk holds the one-process communicator, brisk_mpi the Open MPI one (BRISK_MPI); a program
# links one of them. Installed with headers, BriskConfig.cmake (find_package(Brisk), targets
# Brisk::brisk and, with COMPONENTS mpi, Brisk::brisk_mpi) and pkg-config files brisk.pc and
# brisk-mpi.pc.
include(GNUInstallDirs)
include(CMakePackageConfigHelpers)

# Where logging/ generates the protobuf-c code of the event schema.
set(BRISK_PROTO_OUT ${PROJECT_BINARY_DIR}/logging/proto)
set(BRISK_MODULE_OBJECTS $<TARGET_OBJECTS:brisk_core> $<TARGET_OBJECTS:brisk_tbproto>
    $<TARGET_OBJECTS:brisk_log> $<TARGET_OBJECTS:brisk_parallel>)
set(BRISK_PUBLIC_INCLUDES ${PROJECT_SOURCE_DIR}/core/include
    ${PROJECT_SOURCE_DIR}/logging/include ${PROJECT_SOURCE_DIR}/parallel/include)
# Headers shared by the modules, the tree's programs and tests, never installed: rings, the
# worker pool, TFRecord framing, file utilities, CRC-32C.
set(BRISK_INTERNAL_INCLUDES ${PROJECT_SOURCE_DIR}/core/internal
    ${PROJECT_SOURCE_DIR}/logging/internal ${PROJECT_SOURCE_DIR}/parallel/internal)

# brisk_assemble(name STATIC|SHARED comm_objects)
function(brisk_assemble name type comm)
  add_library(${name} ${type} ${BRISK_MODULE_OBJECTS} $<TARGET_OBJECTS:${comm}>)
  foreach(dir ${BRISK_PUBLIC_INCLUDES})
    target_include_directories(${name} PUBLIC $<BUILD_INTERFACE:${dir}>)
  endforeach()
  target_include_directories(${name} PUBLIC $<INSTALL_INTERFACE:${CMAKE_INSTALL_INCLUDEDIR}>)
  target_link_libraries(${name} PUBLIC Threads::Threads
                        PRIVATE ZLIB::ZLIB PkgConfig::CJSON PkgConfig::PROTOBUF_C m)
  if(comm STREQUAL "brisk_comm_mpi")
    target_link_libraries(${name} PRIVATE MPI::MPI_C)
  endif()
  target_link_options(${name} PRIVATE ${BRISK_SAN_FLAGS})
  if(type STREQUAL "SHARED")
    # Only brisk_<lowercase>... is exported: not brisk__internal, not protobuf-c's code.
    target_link_options(${name} PRIVATE
                        "LINKER:--version-script=${PROJECT_SOURCE_DIR}/cmake/brisk.map")
    set_target_properties(${name} PROPERTIES VERSION ${PROJECT_VERSION}
                          SOVERSION ${PROJECT_VERSION_MAJOR}
                          LINK_DEPENDS ${PROJECT_SOURCE_DIR}/cmake/brisk.map)
  endif()
endfunction()

if(BUILD_SHARED_LIBS)
  set(BRISK_LIB_TYPE SHARED)
else()
  set(BRISK_LIB_TYPE STATIC)
endif()

brisk_assemble(brisk_internal STATIC brisk_comm)
# The tests and tools also decode event files with the generated protobuf-c code.
target_include_directories(brisk_internal PUBLIC ${BRISK_PROTO_OUT} ${BRISK_INTERNAL_INCLUDES})
brisk_assemble(brisk ${BRISK_LIB_TYPE} brisk_comm)
add_library(Brisk::brisk ALIAS brisk)
set(BRISK_INSTALL_TARGETS brisk)
if(BRISK_MPI)
  brisk_assemble(brisk_internal_mpi STATIC brisk_comm_mpi)
  target_include_directories(brisk_internal_mpi PUBLIC ${BRISK_PROTO_OUT} ${BRISK_INTERNAL_INCLUDES})
  brisk_assemble(brisk_mpi ${BRISK_LIB_TYPE} brisk_comm_mpi)
  add_library(Brisk::brisk_mpi ALIAS brisk_mpi)
  set(BRISK_PROGRAM_LIB brisk_internal_mpi)
else()
  set(BRISK_PROGRAM_LIB brisk_internal)
endif()

if(NOT BRISK_INSTALL)
  return()
endif()

set(BRISK_CMAKE_DIR ${CMAKE_INSTALL_LIBDIR}/cmake/Brisk)
install(TARGETS brisk EXPORT BriskTargets
        ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR}
        LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}
        INCLUDES DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
install(EXPORT BriskTargets NAMESPACE Brisk:: DESTINATION ${BRISK_CMAKE_DIR})
if(BRISK_MPI)
  install(TARGETS brisk_mpi EXPORT BriskMpiTargets
          ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR}
          LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}
          INCLUDES DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
  install(EXPORT BriskMpiTargets NAMESPACE Brisk:: DESTINATION ${BRISK_CMAKE_DIR})
endif()
foreach(dir ${BRISK_PUBLIC_INCLUDES})
  install(DIRECTORY ${dir}/brisk DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}
          FILES_MATCHING PATTERN "*.h")
endforeach()

set(BRISK_HAVE_MPI_COMPONENT ${BRISK_MPI})
configure_package_config_file(${PROJECT_SOURCE_DIR}/cmake/BriskConfig.cmake.in
                              ${PROJECT_BINARY_DIR}/BriskConfig.cmake
                              INSTALL_DESTINATION ${BRISK_CMAKE_DIR})
write_basic_package_version_file(${PROJECT_BINARY_DIR}/BriskConfigVersion.cmake
                                 COMPATIBILITY SameMinorVersion)
install(FILES ${PROJECT_BINARY_DIR}/BriskConfig.cmake
              ${PROJECT_BINARY_DIR}/BriskConfigVersion.cmake
        DESTINATION ${BRISK_CMAKE_DIR})

# pkg-config: with a static library its dependencies go in Requires and Libs (a plain
# `pkg-config --libs brisk` must link); with a shared one in the .private fields. The prefix is
# found from the file's own place (${pcfiledir}), so the package can be installed anywhere.
file(RELATIVE_PATH BRISK_PC_UP /${CMAKE_INSTALL_LIBDIR}/pkgconfig /)
string(REGEX REPLACE "/$" "" BRISK_PC_UP "${BRISK_PC_UP}")
function(brisk_pkgconfig file lib requires description)
  set(BRISK_PC_NAME ${file})
  set(BRISK_PC_LIB ${lib})
  set(BRISK_PC_DESCRIPTION ${description})
  if(BUILD_SHARED_LIBS)
    set(BRISK_PC_REQUIRES_LINE "Requires.private: ${requires}")
    set(BRISK_PC_LIBS_PUBLIC "")
    set(BRISK_PC_LIBS_PRIVATE_LINE "Libs.private: -lm -pthread")
  else()
    set(BRISK_PC_REQUIRES_LINE "Requires: ${requires}")
    set(BRISK_PC_LIBS_PUBLIC "-lm -pthread")
    set(BRISK_PC_LIBS_PRIVATE_LINE "")
  endif()
  configure_file(${PROJECT_SOURCE_DIR}/cmake/brisk.pc.in ${PROJECT_BINARY_DIR}/${file}.pc @ONLY)
  install(FILES ${PROJECT_BINARY_DIR}/${file}.pc DESTINATION ${CMAKE_INSTALL_LIBDIR}/pkgconfig)
endfunction()
brisk_pkgconfig(brisk brisk "zlib libcjson libprotobuf-c"
                "Data-parallel neural network training on every core, with TensorBoard logs")
if(BRISK_MPI)
  brisk_pkgconfig(brisk-mpi brisk_mpi "zlib libcjson libprotobuf-c ompi-c"
                  "Brisk with its Open MPI communicator (mpirun -np P)")
endif()
