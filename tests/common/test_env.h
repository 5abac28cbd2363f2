#pragma once
/// Paths the test runner passes in the environment (see tests/CMakeLists.txt).
#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "framework/dist/process_group.h"
#include "sdtrain/image.h"

namespace sdtrain::test {

inline std::string env_or_fail(const char* name) {
  const char* value = std::getenv(name);
  if (value == nullptr) {
    ADD_FAILURE() << name << " is not set (run the tests through ctest)";
    return {};
  }
  return value;
}

inline std::filesystem::path source_dir() { return env_or_fail("SDTRAIN_SOURCE_DIR"); }
inline std::filesystem::path binary_dir() { return env_or_fail("SDTRAIN_BINARY_DIR"); }
inline std::filesystem::path fixture_dir(const std::string& fixture) {
  return std::filesystem::path(env_or_fail("SDTRAIN_FIXTURE_DIR")) / fixture;
}
inline std::filesystem::path library(const std::string& name) { return binary_dir() / "lib" / ("lib" + name + ".so"); }

/// A fresh empty directory under the build tree, named after the running test (each call empties
/// it again: call once per test).
inline std::filesystem::path scratch_dir() {
  const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
  auto dir = binary_dir() / "test_scratch" / (std::string(info->test_suite_name()) + "." + info->name());
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  return dir;
}

/// Writes `text` to `path` and returns the path as a string.
std::string write_text(const std::filesystem::path& path, const std::string& text);

/// An image_folder dataset in `dir`: `count` 16x16 PNGs img<i>.png with distinct deterministic
/// pixels and a metadata.csv giving image i the caption captions[i % captions.size()].
void write_captioned_image_folder(const std::filesystem::path& dir, int count, const std::vector<std::string>& captions);

/// The checkpoint folder a run with output_dir `output_dir` writes at `step`
/// (<output_dir>/checkpoints/step-NNNNNNNN).
std::filesystem::path checkpoint_dir(const std::filesystem::path& output_dir, int step);

/// Every tensor of safetensors file `a` equals `b`'s (same names) within `tolerance` times b's
/// largest magnitude (0: bitwise); failures name the tensor.
void expect_same_tensors(const std::filesystem::path& a, const std::filesystem::path& b, double tolerance);

/// Peak signal-to-noise ratio of two 8-bit images of equal size, in dB (infinity when equal).
double psnr(const Image& a, const Image& b);

/// Runs a shell command, returning its exit code and capturing stdout+stderr into *output.
int run_command(const std::string& command, std::string* output);

/// "mpirun -np N" as the tests run it (oversubscribed, unbound, one OpenMP thread per rank, root
/// allowed), exporting `env` (NAME=VALUE ...) to every rank.
std::string mpirun(int ranks, const std::vector<std::string>& env = {});

/// The process's MPI process group, initialised on first use (world size 1 outside mpirun).
ProcessGroup& process_group();

}  // namespace sdtrain::test
