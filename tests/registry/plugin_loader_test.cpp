// External plugin libraries: loading, and each failure with its own clear error.
#include <gtest/gtest.h>

#include "framework/registry/plugin_loader.h"
#include "framework/registry/registry.h"
#include "sdtrain/dataset.h"
#include "sdtrain/errors.h"
#include "sdtrain/model.h"
#include "sdtrain/version.h"
#include "tests/common/test_env.h"

namespace sdtrain {
namespace {

std::string load_error(const std::string& path) {
  try {
    load_plugin_library(path);
  } catch (const PluginError& error) {
    return error.what();
  }
  return "no error";
}

TEST(PluginLoader, LoadsAnExternalPluginAndItsOptionsType) {
  const std::string path = test::library("sdtrain_test_plugins").string();
  // test_tiny_denoiser, test_colors and the test_recorder callback.
  EXPECT_EQ(load_plugin_library(path), 3);
  ASSERT_NE(Registry<Callback>::instance().find("test_recorder"), nullptr);
  const PluginEntry* model = Registry<Model>::instance().find("test_tiny_denoiser");
  ASSERT_NE(model, nullptr);
  EXPECT_EQ(model->library, std::filesystem::canonical(path).string());
  EXPECT_EQ(model->options_type->full_name(), "sdtrain_test.TinyDenoiserOptions");
  ASSERT_NE(Registry<Dataset>::instance().find("test_colors"), nullptr);
  // Loading again is a no-op, not a duplicate registration.
  EXPECT_EQ(load_plugin_library(path), 0);
  // A dataset built through the registry works.
  PluginSpec spec;
  spec.set_type("test_colors");
  auto dataset = Registry<Dataset>::instance().create(spec, PluginContext{}, "data.train");
  EXPECT_EQ(dataset->size(), 32u);
  EXPECT_EQ(dataset->get(2).caption, "a blue square");
}

TEST(PluginLoader, MissingLibrary) {
  EXPECT_EQ(load_error("/no/such/dir/libmissing.so"), "plugin library not found: /no/such/dir/libmissing.so (from '/no/such/dir/libmissing.so')");
}

TEST(PluginLoader, MissingSymbol) {
  const std::string path = std::filesystem::canonical(test::library("sdtrain_test_no_symbol")).string();
  EXPECT_EQ(load_error(path), "plugin library " + path +
                                  " has no 'sdtrain_plugin_info' symbol: it is not an sdtrain plugin (put "
                                  "SDTRAIN_PLUGIN_LIBRARY() in one of its source files)");
}

TEST(PluginLoader, VersionMismatchIsRefusedAndRegistersNothing) {
  const std::string path = std::filesystem::canonical(test::library("sdtrain_test_abi_mismatch")).string();
  EXPECT_EQ(load_error(path), "plugin library " + path +
                                  " was built against sdtrain 0.0.1 (plugin ABI 0000000000000000), but this is "
                                  "sdtrain " SDTRAIN_VERSION_STRING " (plugin ABI " SDTRAIN_PLUGIN_ABI
                                  "); its public headers differ, rebuild the plugin");
  EXPECT_EQ(Registry<Dataset>::instance().find("abi_mismatch_dataset"), nullptr);
}

TEST(PluginLoader, UndefinedSymbolQuotesTheLoader) {
  const std::string path = std::filesystem::canonical(test::library("sdtrain_test_undefined_symbol")).string();
  const std::string error = load_error(path);
  EXPECT_EQ(error.rfind("cannot load plugin library " + path + ": ", 0), 0u) << error;
  EXPECT_NE(error.find("undefined symbol: sdtrain_symbol_that_does_not_exist"), std::string::npos) << error;
  EXPECT_NE(error.find("built against another sdtrain or torch version"), std::string::npos) << error;
}

}  // namespace
}  // namespace sdtrain
