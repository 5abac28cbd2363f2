// Every config shipped in configs/ parses and validates.
#include <gtest/gtest.h>

#include <filesystem>

#include "framework/config/config_loader.h"
#include "tests/common/test_env.h"

namespace sdtrain {
namespace {

TEST(ShippedConfigs, EveryFileParsesAndValidates) {
  int count = 0;
  for (const auto& entry : std::filesystem::directory_iterator(test::source_dir() / "configs")) {
    if (entry.path().extension() != ".pbtxt") continue;
    ++count;
    SCOPED_TRACE(entry.path().string());
    EXPECT_NO_THROW({
      LoadedConfig loaded = load_train_config(entry.path().string(), {});
      EXPECT_TRUE(loaded.config.has_model());
    });
  }
  EXPECT_GE(count, 1);
}

}  // namespace
}  // namespace sdtrain
