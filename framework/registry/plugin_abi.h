#pragma once
/// The version stamp every plugin library carries, checked when sdtrain loads it.
///
/// Put SDTRAIN_PLUGIN_LIBRARY() in exactly one .cpp of an external plugin library. sdtrain refuses
/// a library without it, or one stamped with another plugin ABI or another torch major.minor.
#include <torch/version.h>

#include "framework/util/version.h"

extern "C" {
/// The stamp. All strings are static.
struct SdtrainPluginInfo {
  int plugin_abi_version;        ///< SDTRAIN_PLUGIN_ABI_VERSION the library was built with
  const char* sdtrain_version;   ///< SDTRAIN_VERSION_STRING the library was built with
  int torch_version_major;       ///< TORCH_VERSION_MAJOR the library was built with
  int torch_version_minor;       ///< TORCH_VERSION_MINOR the library was built with
};
}

/// The symbol sdtrain looks up in a plugin library.
#define SDTRAIN_PLUGIN_INFO_SYMBOL "sdtrain_plugin_info"

#define SDTRAIN_PLUGIN_LIBRARY()                                                             \
  extern "C" __attribute__((visibility("default"))) const SdtrainPluginInfo*                \
  sdtrain_plugin_info() {                                                                    \
    static const SdtrainPluginInfo info{SDTRAIN_PLUGIN_ABI_VERSION, SDTRAIN_VERSION_STRING,  \
                                        TORCH_VERSION_MAJOR, TORCH_VERSION_MINOR};           \
    return &info;                                                                            \
  }
