// --set path.to.field=value: applied in order, type-checked, errors name the field.
#include <gtest/gtest.h>

#include <google/protobuf/text_format.h>

#include "framework/config/config_loader.h"
#include "framework/registry/plugin_loader.h"
#include "sdtrain/errors.h"
#include "test_plugins.pb.h"
#include "tests/common/test_env.h"

namespace sdtrain {
namespace {

std::string override_error(TrainConfig* config, const std::string& assignment) {
  try {
    apply_override(config, assignment);
  } catch (const ConfigError& error) {
    return error.what();
  }
  return "no error";
}

TEST(Override, SetsScalarsOfEveryKind) {
  TrainConfig config;
  apply_override(&config, "run.max_steps=100");
  apply_override(&config, "optimizer.base_learning_rate=2.5e-5");
  apply_override(&config, "ema.enabled=false");
  apply_override(&config, "precision=BF16");
  apply_override(&config, "run.output_dir=/tmp/a=b");  // only the first '=' splits
  apply_override(&config, "data.transforms.crop=CENTER");
  EXPECT_EQ(config.run().max_steps(), 100);
  EXPECT_DOUBLE_EQ(config.optimizer().base_learning_rate(), 2.5e-5);
  EXPECT_FALSE(config.ema().enabled());
  EXPECT_EQ(config.precision(), BF16);
  EXPECT_EQ(config.run().output_dir(), "/tmp/a=b");
  EXPECT_EQ(config.data().transforms().crop(), TransformConfig::CENTER);
}

TEST(Override, LaterOverridesWin) {
  TrainConfig config;
  apply_override(&config, "data.batch_size=2");
  apply_override(&config, "data.batch_size=8");
  EXPECT_EQ(config.data().batch_size(), 8);
}

TEST(Override, RepeatedFieldsByIndex) {
  TrainConfig config;
  apply_override(&config, "plugin_libraries[0]=liba.so");
  apply_override(&config, "plugin_libraries[1]=libb.so");
  apply_override(&config, "plugin_libraries[0]=libc.so");
  ASSERT_EQ(config.plugin_libraries_size(), 2);
  EXPECT_EQ(config.plugin_libraries(0), "libc.so");
  EXPECT_EQ(config.plugin_libraries(1), "libb.so");
  apply_override(&config, "callbacks[0].type=progress");
  EXPECT_EQ(config.callbacks(0).type(), "progress");
  EXPECT_EQ(override_error(&config, "plugin_libraries[5]=x"),
            "--set plugin_libraries[5]: 'plugin_libraries' is repeated; use plugin_libraries[i] with 0 <= i <= 2");
}

TEST(Override, EntersPluginOptions) {
  load_plugin_library(test::library("sdtrain_test_plugins").string());
  TrainConfig config;
  apply_override(&config, "model.type=test_tiny_denoiser");
  apply_override(&config, "model.options.channels=16");
  apply_override(&config, "model.options.noise_std=0.25");
  sdtrain_test::TinyDenoiserOptions options;
  ASSERT_TRUE(config.model().options().UnpackTo(&options));
  EXPECT_EQ(options.channels(), 16);
  EXPECT_FLOAT_EQ(options.noise_std(), 0.25f);
  EXPECT_EQ(override_error(&config, "model.options.channel=3"),
            "--set model.options.channel: sdtrain_test.TinyDenoiserOptions has no field 'channel'; did you mean "
            "channels?");
}

TEST(Override, TypeErrorsNameTheField) {
  TrainConfig config;
  EXPECT_EQ(override_error(&config, "data.batch_size=abc"),
            "--set data.batch_size: sdtrain.DataConfig.batch_size expects int32, got 'abc'");
  EXPECT_EQ(override_error(&config, "ema.enabled=maybe"),
            "--set ema.enabled: sdtrain.EmaConfig.enabled expects bool, got 'maybe'");
  EXPECT_EQ(override_error(&config, "precision=FP8"),
            "--set precision: sdtrain.TrainConfig.precision expects one of FP32|BF16|FP16, got 'FP8'");
  EXPECT_EQ(override_error(&config, "run.max_stepz=1"),
            "--set run.max_stepz: sdtrain.RunConfig has no field 'max_stepz'; did you mean max_steps?");
  EXPECT_EQ(override_error(&config, "run=1"), "--set run: 'run' is a message (sdtrain.RunConfig); set one of its fields");
  EXPECT_EQ(override_error(&config, "run.max_steps.x=1"), "--set run.max_steps.x: 'max_steps' is a scalar field, not a message");
  EXPECT_EQ(override_error(&config, "novalue"), "--set novalue: expected path.to.field=value");
  EXPECT_EQ(override_error(&config, "run.output_dir=caf\xe9"),
            "--set run.output_dir: not valid UTF-8 at byte 18 of the override; give it as UTF-8 text");
  EXPECT_EQ(override_error(&config, "model.options.x=1"),
            "--set model.options.x: cannot tell the options type of 'options' (set the plugin's type first)");
  // A failed override leaves the config as it was.
  EXPECT_FALSE(config.data().has_batch_size());
}

TEST(Override, AppliedByLoadTrainConfig) {
  const std::string text = "plugin_libraries: \"" + test::library("sdtrain_test_plugins").string() +
                           "\"\nrun { max_steps: 4 }\nmodel { type: \"test_tiny_denoiser\" }\n"
                           "data { train { type: \"test_colors\" } }\n";
  const std::string path = test::write_text(test::scratch_dir() / "cfg.pbtxt", text);
  LoadedConfig loaded = load_train_config(path, {"run.max_steps=9", "data.batch_size=3"});
  EXPECT_EQ(loaded.config.run().max_steps(), 9);
  EXPECT_EQ(loaded.config.data().batch_size(), 3);
  // Overrides are validated like the file.
  EXPECT_THROW(load_train_config(path, {"data.batch_size=0"}), ConfigError);
}

TEST(PrintConfig, ShowsDefaultsAndExpandedOptions) {
  load_plugin_library(test::library("sdtrain_test_plugins").string());
  TrainConfig config;
  apply_override(&config, "model.type=test_tiny_denoiser");
  apply_override(&config, "model.options.channels=16");
  const std::string text = config_to_text(config);
  EXPECT_NE(text.find("[type.googleapis.com/sdtrain_test.TinyDenoiserOptions]"), std::string::npos) << text;
  EXPECT_NE(text.find("channels: 16"), std::string::npos) << text;
  EXPECT_NE(text.find("noise_std: 0.5"), std::string::npos) << text;  // plugin default filled in
  EXPECT_NE(text.find("batch_size: 4"), std::string::npos) << text;   // recipe default
  EXPECT_NE(text.find("base_learning_rate: 0.0001"), std::string::npos) << text;
  // The printed text parses back to the same config.
  TrainConfig reparsed;
  parse_text_config(text, "printed", &reparsed);
  EXPECT_EQ(config_to_text(reparsed), text);
  // Sections whose presence turns a feature on stay out when unset (proto's presence_matters):
  // printed with defaults, they would turn it on when read back.
  EXPECT_EQ(text.find("validation_loss"), std::string::npos) << text;
  EXPECT_EQ(text.find("prior_preservation"), std::string::npos) << text;
  EXPECT_FALSE(reparsed.data().has_validation_loss());
  EXPECT_FALSE(reparsed.data().has_prior_preservation());
  // Set, they are printed with their defaults.
  apply_override(&config, "data.prior_preservation.loss_weight=0.5");
  EXPECT_NE(config_to_text(config).find("prior_preservation {"), std::string::npos);
}

}  // namespace
}  // namespace sdtrain
