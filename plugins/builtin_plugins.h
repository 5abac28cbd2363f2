#pragma once
/// The built-in plugins live in libsdtrain_plugins and register themselves when it loads.

namespace sdtrain {

/// A linker anchor: does nothing, but a program that calls it (a tool's main(), a test) names a
/// symbol of libsdtrain_plugins, so the linker keeps the library, and with it the static
/// registrars of the built-in plugins, in the program.
void anchor_builtin_plugins();

}  // namespace sdtrain
