#include "tests/common/test_env.h"

#include "plugins/builtin_plugins.h"

namespace sdtrain::test {

// Referencing the built-in plugin library keeps it linked into every test program (the linker
// would otherwise drop a library whose symbols no test names, and its plugins with it).
[[maybe_unused]] static const bool kBuiltinPluginsAnchored = [] {
  anchor_builtin_plugins();
  return true;
}();

}  // namespace sdtrain::test
