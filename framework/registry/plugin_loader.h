#pragma once
/// Loads external plugin libraries (config `plugin_libraries`, CLI `--plugin`).
#include <string>
#include <vector>

namespace sdtrain {

/// Loads one plugin library: dlopen's it (its static registrars run but are held back), checks
/// its SdtrainPluginInfo stamp against this sdtrain, then publishes its plugins. A library that
/// was already loaded is not loaded again. Relative paths are resolved against `base_dir`.
/// Returns the number of plugin types the library registered.
/// Throws PluginError naming the library when the file is missing, cannot be loaded (dlerror is
/// quoted), lacks the `sdtrain_plugin_info` symbol, or was built against another plugin ABI or
/// torch version. Libraries are never unloaded (their code backs registered factories).
int load_plugin_library(const std::string& path, const std::string& base_dir = ".");

/// Loads each library in order (see load_plugin_library).
void load_plugin_libraries(const std::vector<std::string>& paths, const std::string& base_dir = ".");

}  // namespace sdtrain
