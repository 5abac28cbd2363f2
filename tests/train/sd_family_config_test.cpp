// Options of mismatched families are refused when the model is built, naming the options, rather
// than failing at the first step (SDXL's own combinations: sd_sdxl_training_test.cpp).
#include <gtest/gtest.h>

#include <string>

#include "sdtrain/errors.h"
#include "tests/train/tiny_sd_model.h"

namespace sdtrain {
namespace {

TEST(SdFamilyConfig, AnSdxlUnetWithoutASecondTextEncoderIsRefusedNamingBoth) {
  anchor_builtin_plugins();
  StableDiffusionOptions options = testing::tiny_options("");
  options.mutable_unet()->set_addition_embed_type("text_time");
  options.mutable_unet()->set_projection_class_embeddings_input_dim(32 + 6 * 8);
  options.mutable_unet()->set_addition_time_embed_dim(8);
  try {
    StableDiffusionModel model(options, PluginContext{});
    FAIL() << "expected ConfigError";
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("unet.addition_embed_type"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("needs text_encoder_2"), std::string::npos) << e.what();
  }
}

TEST(SdFamilyConfig, MismatchedTextEncoderAndUnetWidthsNameBothFields) {
  anchor_builtin_plugins();
  StableDiffusionOptions options = testing::tiny_options("");
  options.mutable_text_encoder()->set_hidden_size(48);  // an SD 2-style width beside a v1 UNet
  options.mutable_text_encoder()->set_num_attention_heads(4);
  try {
    StableDiffusionModel model(options, PluginContext{});
    FAIL() << "expected ConfigError";
  } catch (const ConfigError& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find("unet.cross_attention_dim: 32"), std::string::npos) << what;
    EXPECT_NE(what.find("text_encoder.hidden_size 48"), std::string::npos) << what;
  }
}

}  // namespace
}  // namespace sdtrain
