#pragma once
// Helpers shared by the data tests: fixture paths, temporary folders, raw files.
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "framework/data/image_codec.h"
#include "framework/util/file_util.h"

namespace sdtrain::testing {

/// The environment variable `name`, else `fallback` (the build's value, compiled in: ctest's
/// ENVIRONMENT may not reach gtest-discovered tests), else an exception.
inline std::string env_or(const char* name, const char* fallback) {
  const char* value = std::getenv(name);
  if (value != nullptr && *value != 0) return value;
  if (fallback != nullptr && *fallback != 0) return fallback;
  throw std::runtime_error(std::string("environment variable not set: ") + name);
}

inline std::string binary_dir() { return env_or("SDTRAIN_BINARY_DIR", SDTRAIN_TEST_BINARY_DIR); }

/// $SDTRAIN_FIXTURE_DIR/data_images
inline std::filesystem::path fixture_dir() {
  return std::filesystem::path(env_or("SDTRAIN_FIXTURE_DIR", SDTRAIN_TEST_FIXTURE_DIR)) / "data_images";
}

inline nlohmann::json fixture_manifest() {
  std::ifstream in(fixture_dir() / "manifest.json");
  if (!in) throw std::runtime_error("missing fixture manifest (run ctest so fixture_data_images runs first)");
  return nlohmann::json::parse(in);
}

inline Image read_raw_rgb(const std::string& path, int width, int height) {
  Image image;
  image.width = width;
  image.height = height;
  image.channels = 3;
  const std::string bytes = read_file(path);
  image.pixels.assign(bytes.begin(), bytes.end());
  EXPECT_EQ(image.pixels.size(), static_cast<std::size_t>(width) * height * 3) << path;
  return image;
}

/// A fresh empty directory under the system temp dir, removed by the destructor.
class TempDir {
 public:
  TempDir() {
    std::random_device device;
    path_ = std::filesystem::temp_directory_path() / ("sdtrain_data_test_" + std::to_string(device()) + "_" +
                                                      std::to_string(device()));
    std::filesystem::create_directories(path_);
  }
  ~TempDir() {
    std::error_code ignored;
    std::filesystem::remove_all(path_, ignored);
  }
  const std::filesystem::path& path() const { return path_; }
  std::string file(const std::string& relative, const std::string& content) const {
    const auto full = path_ / relative;
    std::filesystem::create_directories(full.parent_path());
    std::ofstream(full, std::ios::binary) << content;
    return full.string();
  }

 private:
  std::filesystem::path path_;
};

}  // namespace sdtrain::testing
