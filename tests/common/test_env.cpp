#include "tests/common/test_env.h"

#include "plugins/builtin_plugins.h"

namespace sdtrain::test {

// Referencing the built-in plugin library keeps it linked into every test program (the linker
// would otherwise drop a library whose symbols no test names, and its plugins with it).
[[maybe_unused]] static const bool kBuiltinPluginsAnchored = [] {
  anchor_builtin_plugins();
  return true;
}();

// Death tests re-execute the program ("threadsafe" style) instead of forking it. Every test
// program has a thread before main (pyarrow's libarrow, linked through the plugins, starts its
// allocator's background thread at load), and gtest warns that forking a threaded process is
// unsafe; under ThreadSanitizer the stop-signal test's forked child lost its second SIGTERM.
// Set in a global environment, which runs after gtest has read its flags.
class ThreadsafeDeathTests : public ::testing::Environment {
 public:
  void SetUp() override { GTEST_FLAG_SET(death_test_style, "threadsafe"); }
};
[[maybe_unused]] static ::testing::Environment* const kThreadsafeDeathTests =
    ::testing::AddGlobalTestEnvironment(new ThreadsafeDeathTests);

}  // namespace sdtrain::test
