# The protobuf messages: the run's config schema (proto/sdtrain.proto, libsdtrain_proto) and the
# built-in plugins' options, each .proto beside its plugin (libsdtrain_plugin_options). Neither
# library sees torch's include directory, so the generated code always meets Debian's protobuf
# headers.
#
# Included from the top-level CMakeLists.txt on purpose: protobuf_generate puts the calling folder
# first on protoc's import path, and from the project root every file is named by its path
# ("proto/sdtrain.proto", "plugins/datasets/datasets.proto"): the code includes
# "proto/sdtrain.pb.h" and "plugins/datasets/datasets.pb.h", and a plugin proto imports
# "proto/sdtrain.proto" under the one name the schema is registered with.
add_library(sdtrain_proto SHARED proto/sdtrain.proto)
protobuf_generate(TARGET sdtrain_proto LANGUAGE cpp
  IMPORT_DIRS "${PROJECT_SOURCE_DIR}"
  PROTOC_OUT_DIR "${PROJECT_BINARY_DIR}")
target_link_libraries(sdtrain_proto PUBLIC protobuf::libprotobuf)
target_include_directories(sdtrain_proto PUBLIC
  $<BUILD_INTERFACE:${PROJECT_BINARY_DIR}>
  $<BUILD_INTERFACE:${SDTRAIN_PROTOBUF_SHIM_DIR}>
  $<INSTALL_INTERFACE:${CMAKE_INSTALL_INCLUDEDIR}>)

add_library(sdtrain_plugin_options SHARED
  plugins/callbacks/callbacks.proto
  plugins/datasets/datasets.proto
  plugins/models/stable_diffusion/sd_modules.proto
  plugins/models/stable_diffusion/stable_diffusion.proto
  plugins/schedulers/lr/lr_schedules.proto
  plugins/schedulers/noise/schedulers.proto)
protobuf_generate(TARGET sdtrain_plugin_options LANGUAGE cpp
  IMPORT_DIRS "${PROJECT_SOURCE_DIR}"
  PROTOC_OUT_DIR "${PROJECT_BINARY_DIR}")
target_link_libraries(sdtrain_plugin_options PUBLIC sdtrain_proto)
