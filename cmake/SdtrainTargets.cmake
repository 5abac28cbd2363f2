# Helpers shared by every sdtrain target.

# One precompiled <torch/torch.h> shared by every target: torch's headers cost ~40 s of CPU per
# translation unit on their own, which would dominate the build on a 2-core CI machine.
add_library(sdtrain_pch OBJECT "${CMAKE_CURRENT_LIST_DIR}/pch_anchor.cpp")
target_link_libraries(sdtrain_pch PRIVATE ${TORCH_LIBRARIES} protobuf::libprotobuf)
target_include_directories(sdtrain_pch BEFORE PRIVATE "${SDTRAIN_PROTOBUF_SHIM_DIR}")
target_compile_options(sdtrain_pch PRIVATE -Wall -Wextra -Wno-unused-parameter)
target_precompile_headers(sdtrain_pch PRIVATE <torch/torch.h> <google/protobuf/message.h>)
set_target_properties(sdtrain_pch PROPERTIES POSITION_INDEPENDENT_CODE ON)

# Warnings for our own code only (third-party headers come in as SYSTEM and stay quiet).
function(sdtrain_target_defaults target)
  target_precompile_headers(${target} REUSE_FROM sdtrain_pch)
  # The shared header is compiled as position-independent code (-fPIC) for the libraries; an
  # executable must match it exactly (GCC rejects a header built with -fPIC in a -fPIE unit).
  get_target_property(type ${target} TYPE)
  if(type STREQUAL "EXECUTABLE")
    set_target_properties(${target} PROPERTIES POSITION_INDEPENDENT_CODE OFF)
    target_compile_options(${target} PRIVATE -fPIC)
    # libstdc++ first in the program's NEEDED list, so that the dynamic linker binds C++ library
    # calls (ours, the plugins', anything loaded later) to libstdc++ itself. Some torch wheels
    # (2.11.0 among them; pytorch/pytorch#133437) export the std::filesystem functions they link
    # statically, and the compiler driver names libstdc++ last, after libtorch: those copies would
    # win, and their remove_all crashes. Link options come before the objects and libraries.
    target_link_options(${target} BEFORE PRIVATE "LINKER:--push-state,--no-as-needed,-lstdc++,--pop-state")
  endif()
  # No <target>_EXPORTS macro: it would make the shared precompiled header unusable.
  set_target_properties(${target} PROPERTIES DEFINE_SYMBOL "")
  target_compile_options(${target} PRIVATE -Wall -Wextra -Wno-unused-parameter)
  # Debian's protobuf headers ahead of the copy inside the torch wheel (see SdtrainDependencies).
  target_include_directories(${target} BEFORE PRIVATE "${SDTRAIN_PROTOBUF_SHIM_DIR}")
  target_include_directories(${target} PRIVATE "${PROJECT_SOURCE_DIR}/include" "${PROJECT_BINARY_DIR}/include"
                                                "${PROJECT_SOURCE_DIR}" "${PROJECT_BINARY_DIR}")
endfunction()

# sdtrain_plugin_abi_digest(<var>): the plugin ABI stamp, the first 16 hex digits of a SHA-256
# over the public headers (include/sdtrain/*.h, each as its name, a newline and its text, in name
# order). Any edit to a public header changes it; the configure step reruns when one changes.
function(sdtrain_plugin_abi_digest var)
  file(GLOB headers RELATIVE "${PROJECT_SOURCE_DIR}/include/sdtrain" CONFIGURE_DEPENDS
       "${PROJECT_SOURCE_DIR}/include/sdtrain/*.h")
  list(SORT headers)
  set(text "")
  foreach(header IN LISTS headers)
    set(path "${PROJECT_SOURCE_DIR}/include/sdtrain/${header}")
    file(READ "${path}" content)
    string(APPEND text "${header}\n${content}")
    set_property(DIRECTORY APPEND PROPERTY CMAKE_CONFIGURE_DEPENDS "${path}")
  endforeach()
  string(SHA256 digest "${text}")
  string(SUBSTRING "${digest}" 0 16 digest)
  set(${var} "${digest}" PARENT_SCOPE)
endfunction()

# sdtrain_add_plugin_library(<name> SOURCES ...): a shared library of plugins that registers
# itself when loaded (static registrars), linked to the core library.
function(sdtrain_add_plugin_library name)
  cmake_parse_arguments(ARG "" "" "SOURCES;LIBS" ${ARGN})
  add_library(${name} SHARED ${ARG_SOURCES})
  sdtrain_target_defaults(${name})
  target_link_libraries(${name} PUBLIC sdtrain ${ARG_LIBS})
endfunction()
