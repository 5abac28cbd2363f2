// Every kind of bad config gives one clear message naming FILE:LINE:COL or the field.
#include <gtest/gtest.h>

#include "framework/config/config_loader.h"
#include "framework/registry/registry.h"
#include "sdtrain/errors.h"
#include "sdtrain/model.h"
#include "tests/common/test_env.h"

namespace sdtrain {
namespace {

std::string base_config(const std::string& body) {
  return "plugin_libraries: \"" + test::library("sdtrain_test_plugins").string() + "\"\n" + body;
}

const char* kValid = R"(run { output_dir: "out" max_steps: 4 }
model { type: "test_tiny_denoiser" }
data { train { type: "test_colors" } batch_size: 2 }
)";

struct BadConfig {
  const char* name;
  std::string body;            // after the plugin_libraries line (line 1)
  std::string expected;        // substring of the error
};

std::string load_error(const std::string& text, const std::vector<std::string>& overrides = {}) {
  const std::string path = test::write_text(test::scratch_dir() / "cfg.pbtxt", text);
  try {
    load_train_config(path, overrides);
  } catch (const ConfigError& error) {
    return std::string("ConfigError: ") + error.what();
  } catch (const PluginError& error) {
    return std::string("PluginError: ") + error.what();
  }
  return "no error";
}

TEST(ConfigErrors, ValidConfigLoads) { EXPECT_EQ(load_error(base_config(kValid)), "no error"); }

TEST(ConfigErrors, Utf8BeyondAsciiLoads) {
  EXPECT_EQ(load_error(base_config("# caf\u00e9, \u65e5\u672c, \U0001F600\n" + std::string(kValid))), "no error");
}

class ConfigErrorTable : public ::testing::TestWithParam<BadConfig> {};

TEST_P(ConfigErrorTable, MessageNamesTheProblem) {
  const BadConfig& bad = GetParam();
  const std::string error = load_error(base_config(bad.body));
  EXPECT_NE(error.find(bad.expected), std::string::npos) << bad.name << "\n  got: " << error
                                                         << "\n  expected to contain: " << bad.expected;
}

const std::string kModel = "model { type: \"test_tiny_denoiser\" }\n";
const std::string kData = "data { train { type: \"test_colors\" } }\n";
const std::string kRun = "run { max_steps: 4 }\n";

INSTANTIATE_TEST_SUITE_P(
    Table, ConfigErrorTable,
    ::testing::Values(
        BadConfig{"syntax error", kRun + kModel + "data { train { type: \"test_colors\" }\n",
                  "cfg.pbtxt:5:1: Expected identifier"},
        BadConfig{"unknown field with suggestion", "run { max_step: 4 }\n" + kModel + kData,
                  "cfg.pbtxt:2:7: Message type \"sdtrain.RunConfig\" has no field named \"max_step\". Did you mean "
                  "\"max_steps\"?"},
        BadConfig{"wrong value type", "run { max_steps: \"four\" }\n" + kModel + kData,
                  "cfg.pbtxt:2:18: Expected integer"},
        BadConfig{"unknown enum value", kRun + kModel + kData + "precision: FP8\n",
                  "cfg.pbtxt:5:12: Unknown enumeration value of \"FP8\""},
        BadConfig{"field given twice", "run { max_steps: 4 max_steps: 5 }\n" + kModel + kData,
                  "cfg.pbtxt:2:20: Non-repeated field \"max_steps\" is specified multiple times."},
        BadConfig{"unknown Any type", kRun + "model { type: \"test_tiny_denoiser\" options { "
                  "[type.googleapis.com/sdtrain.NoSuchOptions] { } } }\n" + kData,
                  "Could not find type \"type.googleapis.com/sdtrain.NoSuchOptions\""},
        BadConfig{"unknown model type", kRun + "model { type: \"test_tiny_denoisr\" }\n" + kData,
                  "model.type: unknown model type 'test_tiny_denoisr'; did you mean test_tiny_denoiser? Registered model "
                  "types:"},
        BadConfig{"unknown dataset type", kRun + kModel + "data { train { type: \"test_color\" } }\n",
                  "data.train.type: unknown dataset type 'test_color'; did you mean test_colors?"},
        BadConfig{"unknown callback type", kRun + kModel + kData + "callbacks { type: \"progres\" }\n",
                  "callbacks[0].type: unknown callback type 'progres'; did you mean progress?"},
        BadConfig{"unknown lr schedule", kRun + kModel + kData + "lr_schedule { type: \"cosin\" }\n",
                  "lr_schedule.type: unknown lr_schedule type 'cosin'; did you mean cosine?"},
        BadConfig{"options of the wrong type", kRun + "model { type: \"test_tiny_denoiser\" options { "
                  "[type.googleapis.com/sdtrain_test.ColorsOptions] { } } }\n" + kData,
                  "model.options: model type 'test_tiny_denoiser' takes sdtrain_test.TinyDenoiserOptions, got "
                  "sdtrain_test.ColorsOptions"},
        BadConfig{"negative batch", kRun + kModel + "data { train { type: \"test_colors\" } batch_size: -1 }\n",
                  "data.batch_size: must be > 0, got -1"},
        BadConfig{"zero accumulation", kRun + kModel + kData + "gradient_accumulation_steps: 0\n",
                  "gradient_accumulation_steps: must be >= 1"},
        BadConfig{"missing model", kRun + kData, "model: missing"},
        BadConfig{"missing training set", kRun + kModel, "data.train: missing"},
        BadConfig{"no step or epoch limit", kModel + kData, "run.max_steps: set run.max_steps or run.max_epochs"},
        BadConfig{"resume path missing", "run { max_steps: 4 resume: \"no/such/checkpoint\" }\n" + kModel + kData,
                  "run.resume: checkpoint directory not found"},
        BadConfig{"resolution not a multiple of 8",
                  kRun + kModel + "data { train { type: \"test_colors\" } transforms { resolution: 100 } }\n",
                  "data.transforms.resolution: must be a positive multiple of 8, got 100"},
        BadConfig{"ema decay out of range", kRun + kModel + kData + "ema { decay: 1.5 }\n",
                  "ema.decay: must be in [0, 1]"},
        BadConfig{"bad device", "run { max_steps: 4 device: \"tpu\" }\n" + kModel + kData,
                  "run.device: must be auto, cpu, cuda or cuda:N, got 'tpu'"},
        BadConfig{"missing plugin library", "plugin_libraries: \"/no/such/libplugin.so\"\n" + kRun + kModel + kData,
                  "PluginError: plugin library not found: /no/such/libplugin.so"},
        BadConfig{"text saved as Latin-1", "run { max_steps: 4 output_dir: \"caf\xe9\" }\n" + kModel + kData,
                  "cfg.pbtxt:2:36: not valid UTF-8 (byte 0xe9); a config is UTF-8 text, save it as UTF-8"},
        BadConfig{"negative learning rate", kRun + kModel + kData + "optimizer { base_learning_rate: -1 }\n",
                  "optimizer.base_learning_rate: must be > 0"}),
    [](const ::testing::TestParamInfo<BadConfig>& info) {
      std::string name = info.param.name;
      for (char& c : name) {
        if (!isalnum(static_cast<unsigned char>(c))) c = '_';
      }
      return name;
    });

TEST(ConfigErrors, MissingFileIsNamed) {
  try {
    load_train_config("/no/such/config.pbtxt", {});
    FAIL() << "expected ConfigError";
  } catch (const ConfigError& error) {
    EXPECT_STREQ(error.what(), "/no/such/config.pbtxt: config file not found");
  }
}

TEST(ConfigErrors, PluginOptionErrorsNameTheOptionField) {
  const std::string text = base_config(
      "run { max_steps: 4 }\nmodel { type: \"test_tiny_denoiser\" options { "
      "[type.googleapis.com/sdtrain_test.TinyDenoiserOptions] { channels: 0 } } }\n" + kData);
  const std::string path = test::write_text(test::scratch_dir() / "cfg.pbtxt", text);
  LoadedConfig loaded = load_train_config(path, {});
  try {
    Registry<Model>::instance().create(loaded.config.model(), PluginContext{}, "model");
    FAIL() << "expected ConfigError";
  } catch (const ConfigError& error) {
    EXPECT_STREQ(error.what(), "model.options.channels: must be > 0");
  }
}

}  // namespace
}  // namespace sdtrain
