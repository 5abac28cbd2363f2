#include "framework/registry/plugin_loader.h"

#include <dlfcn.h>

#include <filesystem>
#include <set>

#include "framework/registry/registration_scope.h"
#include "sdtrain/errors.h"
#include "sdtrain/plugin.h"

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
  if (std::string(info->plugin_abi) != SDTRAIN_PLUGIN_ABI) {
    throw PluginError("plugin library " + name + " was built against sdtrain " + info->sdtrain_version +
                      " (plugin ABI " + info->plugin_abi + "), but this is sdtrain " SDTRAIN_VERSION_STRING
                      " (plugin ABI " SDTRAIN_PLUGIN_ABI "); its public headers differ, rebuild the plugin");
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
