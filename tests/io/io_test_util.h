#pragma once
// Helpers shared by the io tests: fixture paths, scratch directories, the python checker.
#include <gtest/gtest.h>

#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <map>
#include <filesystem>
#include <fstream>
#include <string>

#include "framework/util/file_util.h"

namespace sdtrain::testing {

inline std::string env_or_fail(const char* name) {
  const char* v = std::getenv(name);
  if (v == nullptr) throw std::runtime_error(std::string("environment variable ") + name + " is not set (run through ctest)");
  return v;
}

/// $SDTRAIN_FIXTURE_DIR/io_fixtures/<name>
inline std::string fixture(const std::string& name) {
  return env_or_fail("SDTRAIN_FIXTURE_DIR") + "/io_fixtures/" + name;
}

/// A fresh directory removed at the end of the test.
class ScratchDir {
 public:
  ScratchDir() {
    std::string templ = (std::filesystem::temp_directory_path() / "sdtrain_io_XXXXXX").string();
    path_ = ::mkdtemp(templ.data());
  }
  ~ScratchDir() { std::filesystem::remove_all(path_); }
  std::string file(const std::string& name) const { return path_ + "/" + name; }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

inline void write_bytes(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

inline std::string read_bytes(const std::string& path) { return read_file(path); }

/// Runs tests/io/make_io_fixtures.py with `args` through $SDTRAIN_PYTHON; returns its exit status
/// and puts its output in `output`.
inline int run_python_check(const std::string& args, std::string& output) {
  const std::string log = (std::filesystem::temp_directory_path() / ("sdtrain_io_py_" + std::to_string(::getpid()) + ".log")).string();
  const std::string cmd = "'" + env_or_fail("SDTRAIN_PYTHON") + "' '" + env_or_fail("SDTRAIN_SOURCE_DIR") +
                          "/tests/io/make_io_fixtures.py' " + args + " > '" + log + "' 2>&1";
  const int rc = std::system(cmd.c_str());
  output = read_bytes(log);
  std::filesystem::remove(log);
  return rc;
}

/// Asserts that `statement` throws FormatError whose message contains every one of `parts`.
#define EXPECT_FORMAT_ERROR(statement, ...)                                             \
  do {                                                                                  \
    try {                                                                               \
      statement;                                                                        \
      ADD_FAILURE() << "expected FormatError from " #statement;                         \
    } catch (const ::sdtrain::FormatError& e) {                                         \
      for (const std::string& part : std::initializer_list<std::string>{__VA_ARGS__}) { \
        EXPECT_NE(std::string(e.what()).find(part), std::string::npos)                  \
            << "message: " << e.what() << "\nmissing: " << part;                        \
      }                                                                                 \
    }                                                                                   \
  } while (0)

}  // namespace sdtrain::testing
