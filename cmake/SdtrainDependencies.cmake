# Finds every third-party dependency once, in an order that matters (see docs/build-notes.md).

# --- Python (only to locate the torch wheel and to run test references; never linked) -------------
if(NOT SDTRAIN_PYTHON)
  if(EXISTS "${CMAKE_SOURCE_DIR}/.venv/bin/python")
    set(_py "${CMAKE_SOURCE_DIR}/.venv/bin/python")
  else()
    find_program(_py NAMES python3 python REQUIRED)
  endif()
  set(SDTRAIN_PYTHON "${_py}" CACHE FILEPATH "Python with torch (and, for tests, the reference packages)")
endif()

# --- Protocol Buffers: MUST come before Torch --------------------------------------------------
# The torch wheel's Caffe2Config.cmake aliases protobuf::libprotobuf to an empty target when none
# exists yet; found first, Debian's real library wins.
find_package(Protobuf 3.12 REQUIRED)

# The wheel also ships protobuf 3.13 headers in torch/include/google/protobuf. Torch's include
# directory is searched before /usr/include, so those headers would shadow Debian's in any file
# that sees both. We stage a directory holding only a link to the real headers and put it first
# (-I beats -isystem) on every target that includes generated .pb.h files next to torch.
get_filename_component(_pb_inc "${Protobuf_INCLUDE_DIR}" ABSOLUTE)
set(SDTRAIN_PROTOBUF_SHIM_DIR "${CMAKE_BINARY_DIR}/protobuf-include")
file(MAKE_DIRECTORY "${SDTRAIN_PROTOBUF_SHIM_DIR}")
file(CREATE_LINK "${_pb_inc}/google" "${SDTRAIN_PROTOBUF_SHIM_DIR}/google" SYMBOLIC)

# --- LibTorch from the pip wheel ---------------------------------------------------------------
if(NOT Torch_DIR)
  execute_process(
    COMMAND "${SDTRAIN_PYTHON}" -c "import torch; print(torch.utils.cmake_prefix_path, end='')"
    OUTPUT_VARIABLE _torch_prefix RESULT_VARIABLE _torch_rc ERROR_QUIET)
  if(NOT _torch_rc EQUAL 0)
    message(FATAL_ERROR "sdtrain: '${SDTRAIN_PYTHON} -c \"import torch\"' failed. Install the torch "
                        "wheel (launch/setup.sh does) or pass -DSDTRAIN_PYTHON=/path/to/python.")
  endif()
  list(APPEND CMAKE_PREFIX_PATH "${_torch_prefix}")
endif()
find_package(Torch REQUIRED)
# Installed programs find libtorch where the wheel keeps it (nothing is copied out of the wheel).
get_filename_component(SDTRAIN_TORCH_LIBRARY_DIR "${TORCH_LIBRARY}" DIRECTORY)
list(APPEND CMAKE_INSTALL_RPATH "${SDTRAIN_TORCH_LIBRARY_DIR}")

# Debian's libraries (protobuf, boost, gtest) use the C++11 string ABI; a torch built with the old
# ABI would link but crash on the first std::string crossing the boundary. Refuse it here.
execute_process(
  COMMAND "${SDTRAIN_PYTHON}" -c "import torch; print(int(torch._C._GLIBCXX_USE_CXX11_ABI), end='')"
  OUTPUT_VARIABLE SDTRAIN_TORCH_CXX11_ABI ERROR_QUIET)
if(NOT SDTRAIN_TORCH_CXX11_ABI STREQUAL "1")
  message(FATAL_ERROR "sdtrain: this torch was built with _GLIBCXX_USE_CXX11_ABI=0 "
                      "(torch._C._GLIBCXX_USE_CXX11_ABI=${SDTRAIN_TORCH_CXX11_ABI}); Debian's "
                      "protobuf/boost/gtest need the C++11 ABI. Use a torch wheel >= 2.7.")
endif()
execute_process(
  COMMAND "${SDTRAIN_PYTHON}" -c "import torch; print(torch.__version__, end='')"
  OUTPUT_VARIABLE SDTRAIN_TORCH_VERSION ERROR_QUIET)
message(STATUS "sdtrain: torch ${SDTRAIN_TORCH_VERSION} from ${Torch_DIR}")

# --- CUDA and NCCL: only when this torch was built with CUDA -----------------------------------
set(SDTRAIN_WITH_CUDA OFF)
if(TARGET torch_cuda)
  set(SDTRAIN_WITH_CUDA ON)
endif()
set(SDTRAIN_WITH_NCCL OFF)
if(SDTRAIN_WITH_CUDA)
  execute_process(
    COMMAND "${SDTRAIN_PYTHON}" -c
      "import os, nvidia.nccl as n; print(os.path.dirname(n.__file__) if n.__file__ else list(n.__path__)[0], end='')"
    OUTPUT_VARIABLE _nccl_wheel ERROR_QUIET)
  find_path(NCCL_INCLUDE_DIR nccl.h
    HINTS ${_nccl_wheel}/include ${CUDAToolkit_INCLUDE_DIRS} $ENV{NCCL_HOME}/include /usr/local/cuda/include)
  find_library(NCCL_LIBRARY NAMES nccl libnccl.so.2
    HINTS ${_nccl_wheel}/lib ${CUDAToolkit_LIBRARY_DIR} $ENV{NCCL_HOME}/lib /usr/local/cuda/lib64)
  if(NCCL_INCLUDE_DIR AND NCCL_LIBRARY)
    set(SDTRAIN_WITH_NCCL ON)
    add_library(sdtrain_nccl INTERFACE)
    target_include_directories(sdtrain_nccl SYSTEM INTERFACE ${NCCL_INCLUDE_DIR})
    target_link_libraries(sdtrain_nccl INTERFACE ${NCCL_LIBRARY})
  else()
    message(FATAL_ERROR "sdtrain: torch has CUDA but NCCL was not found (looked in the nvidia-nccl "
                        "wheel, the CUDA toolkit and NCCL_HOME). Install nvidia-nccl-cu13.")
  endif()
endif()
message(STATUS "sdtrain: CUDA ${SDTRAIN_WITH_CUDA}, NCCL ${SDTRAIN_WITH_NCCL}")

# --- Debian packages ---------------------------------------------------------------------------
find_package(MPI REQUIRED COMPONENTS CXX)
find_package(Boost 1.71 REQUIRED COMPONENTS program_options)
find_package(Threads REQUIRED)
find_package(PkgConfig REQUIRED)
find_package(ZLIB REQUIRED)
find_package(OpenSSL REQUIRED COMPONENTS Crypto)
find_package(nlohmann_json 3.9 REQUIRED)
# Debian's libzip CMake config references tools it does not install; pkg-config is reliable.
pkg_check_modules(LIBZIP REQUIRED IMPORTED_TARGET libzip)
find_package(JPEG REQUIRED)
find_package(PNG REQUIRED)
pkg_check_modules(WEBP REQUIRED IMPORTED_TARGET libwebp)
pkg_check_modules(UTF8PROC REQUIRED IMPORTED_TARGET libutf8proc)
# Tar shards (the webdataset dataset plugin and `sddata convert`).
pkg_check_modules(LIBARCHIVE REQUIRED IMPORTED_TARGET libarchive)

# --- Apache Arrow / Parquet C++ from the pyarrow wheel (the parquet dataset plugin) -------------
# As LibTorch comes from the torch wheel: the wheel carries libarrow, libparquet and their headers
# (Debian packages neither). Optional: a python without pyarrow (a GPU machine's own) builds
# everything but the parquet plugin. SDTRAIN_WITH_PARQUET=OFF leaves it out on purpose.
set(SDTRAIN_WITH_PARQUET AUTO CACHE STRING "Build the parquet dataset plugin (ON, OFF or AUTO: when pyarrow imports)")
set(_want_parquet ${SDTRAIN_WITH_PARQUET})
set(SDTRAIN_WITH_PARQUET OFF)
if(NOT _want_parquet STREQUAL "OFF")
  execute_process(
    COMMAND "${SDTRAIN_PYTHON}" -c "import pyarrow as p; print(p.get_include() + ';' + p.get_library_dirs()[0], end='')"
    OUTPUT_VARIABLE _pyarrow RESULT_VARIABLE _pyarrow_rc ERROR_QUIET)
  if(_pyarrow_rc EQUAL 0)
    list(GET _pyarrow 0 _arrow_include)
    list(GET _pyarrow 1 _arrow_libdir)
    # The wheel holds lib<name>.so.<SOVERSION> without the unversioned link; take the shortest name.
    foreach(_lib arrow parquet)
      file(GLOB _candidates "${_arrow_libdir}/lib${_lib}.so.*")
      list(SORT _candidates COMPARE NATURAL)
      list(LENGTH _candidates _count)
      if(_count EQUAL 0)
        message(FATAL_ERROR "sdtrain: pyarrow in ${_arrow_libdir} has no lib${_lib}.so.*")
      endif()
      list(GET _candidates 0 SDTRAIN_${_lib}_LIBRARY)
    endforeach()
    add_library(sdtrain_arrow INTERFACE)
    target_include_directories(sdtrain_arrow SYSTEM INTERFACE "${_arrow_include}")
    target_link_libraries(sdtrain_arrow INTERFACE "${SDTRAIN_parquet_LIBRARY}" "${SDTRAIN_arrow_LIBRARY}")
    list(APPEND CMAKE_INSTALL_RPATH "${_arrow_libdir}")
    set(SDTRAIN_WITH_PARQUET ON)
  elseif(_want_parquet STREQUAL "ON")
    message(FATAL_ERROR "sdtrain: SDTRAIN_WITH_PARQUET=ON but '${SDTRAIN_PYTHON} -c \"import pyarrow\"' failed; "
                        "pip install pyarrow (launch/requirements-test.txt pins it)")
  endif()
endif()
message(STATUS "sdtrain: Parquet ${SDTRAIN_WITH_PARQUET}")
if(SDTRAIN_BUILD_TESTS)
  find_package(GTest REQUIRED)
endif()
