#pragma once
/// The built-in plugins live in libsdtrain_plugins and register themselves when it loads.

namespace sdtrain {

/// Returns the number of built-in plugin types. Calling it from a tool's main() also guarantees
/// that the linker keeps libsdtrain_plugins (and so its static registrars) in the program.
int builtin_plugin_count();

}  // namespace sdtrain
