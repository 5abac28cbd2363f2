// The process and file helpers of test_env.h, apart from test_env.cpp so that test programs
// linking libsdtrain without the plugins can use them too.
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cstdio>
#include <fstream>

#include "tests/common/test_env.h"

namespace sdtrain::test {

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

std::string mpirun(int ranks, const std::vector<std::string>& env) {
  std::string command = "mpirun -np " + std::to_string(ranks) + " --oversubscribe --bind-to none -x OMP_NUM_THREADS=1";
  if (geteuid() == 0) command += " --allow-run-as-root";
  for (const auto& item : env) command += " -x " + item;
  return command;
}

ProcessGroup& process_group() {
  static ProcessGroup group;
  return group;
}

}  // namespace sdtrain::test
