#include "framework/registry/plugin_loader.h"

#include <dlfcn.h>

#include <filesystem>
#include <set>

#include "framework/registry/plugin_abi.h"
#include "framework/registry/registration_scope.h"
#include "framework/util/errors.h"

namespace sdtrain {
namespace fs = std::filesystem;

int load_plugin_library(const std::string& path, const std::string& base_dir) {
  static std::set<std::string> loaded;
  fs::path file(path);
  if (file.is_relative() && path.find('/') != std::string::npos) file = fs::path(base_dir) / file;
  if (path.find('/') != std::string::npos || fs::exists(file)) {
    if (!fs::exists(file)) {
      throw PluginError("plugin library not found: " + file.string() + " (from '" + path + "')");
    }
    file = fs::canonical(file);
  }
  const std::string name = file.string();
  if (loaded.count(name)) return 0;

  RegistrationScope scope(name);
  // RTLD_GLOBAL so that a plugin's protobuf descriptors and typeinfo are shared with sdtrain.
  void* handle = dlopen(name.c_str(), RTLD_NOW | RTLD_GLOBAL);
  if (handle == nullptr) {
    const char* error = dlerror();
    throw PluginError("cannot load plugin library " + name + ": " + (error ? error : "unknown error") +
                      " (an undefined symbol usually means it was built against another sdtrain "
                      "or torch version)");
  }
  dlerror();
  using InfoFunction = const SdtrainPluginInfo* (*)();
  auto info_function = reinterpret_cast<InfoFunction>(dlsym(handle, SDTRAIN_PLUGIN_INFO_SYMBOL));
  if (info_function == nullptr) {
    throw PluginError("plugin library " + name + " has no '" SDTRAIN_PLUGIN_INFO_SYMBOL
                      "' symbol: it is not an sdtrain plugin (put SDTRAIN_PLUGIN_LIBRARY() in "
                      "one of its source files)");
  }
  const SdtrainPluginInfo* info = info_function();
  if (info->plugin_abi_version != SDTRAIN_PLUGIN_ABI_VERSION) {
    throw PluginError("plugin library " + name + " was built against sdtrain " + info->sdtrain_version +
                      " (plugin ABI " + std::to_string(info->plugin_abi_version) +
                      "), but this is sdtrain " SDTRAIN_VERSION_STRING " (plugin ABI " +
                      std::to_string(SDTRAIN_PLUGIN_ABI_VERSION) + "); rebuild the plugin");
  }
  if (info->torch_version_major != TORCH_VERSION_MAJOR || info->torch_version_minor != TORCH_VERSION_MINOR) {
    throw PluginError("plugin library " + name + " was built against torch " +
                      std::to_string(info->torch_version_major) + "." +
                      std::to_string(info->torch_version_minor) + ", but sdtrain uses torch " +
                      std::to_string(TORCH_VERSION_MAJOR) + "." + std::to_string(TORCH_VERSION_MINOR) +
                      "; rebuild the plugin");
  }
  loaded.insert(name);
  return static_cast<int>(scope.commit());
}

void load_plugin_libraries(const std::vector<std::string>& paths, const std::string& base_dir) {
  for (const auto& path : paths) load_plugin_library(path, base_dir);
}

}  // namespace sdtrain
