#include "tests/common/test_env.h"

#include <sys/wait.h>

#include <array>
#include <cstdio>
#include <fstream>

#include "plugins/builtin_plugins.h"

namespace sdtrain::test {

// Referencing the built-in plugin library keeps it linked into every test program (the linker
// would otherwise drop a library whose symbols no test names, and its plugins with it).
static const int kBuiltinPlugins = builtin_plugin_count();

std::string write_text(const std::filesystem::path& path, const std::string& text) {
  std::filesystem::create_directories(path.parent_path());
  std::ofstream out(path, std::ios::binary);
  out << text;
  return path.string();
}

int run_command(const std::string& command, std::string* output) {
  FILE* pipe = popen((command + " 2>&1").c_str(), "r");
  if (pipe == nullptr) return -1;
  std::array<char, 4096> buffer;
  output->clear();
  while (std::size_t n = fread(buffer.data(), 1, buffer.size(), pipe)) output->append(buffer.data(), n);
  const int status = pclose(pipe);
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

}  // namespace sdtrain::test
