// SDXL's weights in the three formats, on the fixture's tiny StableDiffusionXLPipeline: the
// original single-file layout (conditioner.embedders.0 = CLIP ViT-L in transformers' names,
// conditioner.embedders.1.model = OpenCLIP with fused q/k/v and its projection, the UNet's
// label_emb) read by diffusers' from_single_file to the same weights; folders written back bit for
// bit with configs diffusers builds the pipeline from, also when inferred from a .ckpt; an SDXL
// file given to a model configured for one text encoder is refused by name.
#include <gtest/gtest.h>

#include <filesystem>

#include <nlohmann/json.hpp>

#include "framework/io/safetensors_reader.h"
#include "framework/util/file_util.h"
#include "plugins/models/stable_diffusion/weights/sd_weights_io.h"
#include "sdtrain/errors.h"
#include "tests/common/reference_check.h"
#include "tests/common/test_env.h"
#include "tests/train/tiny_sd_model.h"

namespace sdtrain {
namespace {
namespace fs = std::filesystem;

fs::path reference() { return test::fixture_dir("weights_tiny") / "diffusers_xl"; }
std::string sdconvert() { return (test::binary_dir() / "bin" / "sdconvert").string(); }

void convert(const std::string& args) {
  std::string out;
  ASSERT_EQ(test::run_command(sdconvert() + " " + args, &out), 0) << args << "\n" << out;
}

/// check_original_xl.py against the fixture's pipeline; expects "OK".
void expect_diffusers_agrees(const std::vector<std::string>& checks) {
  test::expect_reference_check("weights/check_original_xl.py", reference(), checks);
}

nlohmann::json read_json(const fs::path& path) { return nlohmann::json::parse(read_file(path.string())); }

TEST(SdxlWeightsIo, SingleFileLayoutThatDiffusersReads) {
  const fs::path dir = test::scratch_dir();
  const std::string single = (dir / "xl.safetensors").string();
  const std::string ckpt = (dir / "xl.ckpt").string();
  convert("--input " + reference().string() + " --output " + single);
  convert("--input " + single + " --output " + ckpt);
  SafetensorsReader file(single);
  EXPECT_TRUE(file.contains("conditioner.embedders.0.transformer.text_model.embeddings.token_embedding.weight"));
  EXPECT_TRUE(file.contains("conditioner.embedders.0.transformer.text_model.embeddings.position_ids"));
  EXPECT_EQ(file.entry("conditioner.embedders.1.model.transformer.resblocks.1.attn.in_proj_weight").shape,
            (std::vector<int64_t>{3 * 48, 48}));
  EXPECT_EQ(file.entry("conditioner.embedders.1.model.text_projection").shape, (std::vector<int64_t>{48, 16}));
  EXPECT_TRUE(file.contains("model.diffusion_model.label_emb.0.0.weight"));
  EXPECT_TRUE(file.contains("model.diffusion_model.label_emb.0.2.bias"));
  // Block 1's second transformer block (depth 2), under the original input block 4.
  EXPECT_TRUE(file.contains("model.diffusion_model.input_blocks.4.1.transformer_blocks.1.attn2.to_k.weight"));
  for (const auto& name : file.names()) EXPECT_NE(name.rfind("cond_stage_model.", 0), 0u) << name;
  expect_diffusers_agrees({"file=" + single, "file=" + ckpt});
}

TEST(SdxlWeightsIo, FolderFromACkptBitForBitWithConfigsInferred) {
  const fs::path dir = test::scratch_dir();
  const std::string ckpt = (dir / "xl.ckpt").string();
  const fs::path folder = dir / "back";
  convert("--input " + reference().string() + " --output " + ckpt);
  convert("--input " + ckpt + " --output " + folder.string() + " --tokenizer " + (reference() / "tokenizer").string() +
          " --tokenizer-2 " + (reference() / "tokenizer_2").string());
  const SdWeights want = load_sd_weights(reference().string());
  const SdWeights got = load_sd_weights(folder.string());
  ASSERT_TRUE(want.is_sdxl());
  for (const auto& [component, got_map, want_map] :
       {std::tuple{"unet", &got.unet, &want.unet}, std::tuple{"vae", &got.vae, &want.vae},
        std::tuple{"text_encoder", &got.text_encoder, &want.text_encoder},
        std::tuple{"text_encoder_2", &got.text_encoder_2, &want.text_encoder_2}}) {
    ASSERT_EQ(got_map->size(), want_map->size()) << component;
    for (const auto& [name, tensor] : *want_map) {
      ASSERT_TRUE(got_map->count(name)) << component << "." << name;
      EXPECT_TRUE(torch::equal(got_map->at(name), tensor)) << component << "." << name;
    }
  }
  // The .ckpt carried no configs: what the shapes and the layout tell.
  const auto unet = read_json(folder / "unet" / "config.json");
  EXPECT_EQ(unet["addition_embed_type"], "text_time");
  EXPECT_EQ(unet["projection_class_embeddings_input_dim"], 16 + 6 * 8);
  EXPECT_EQ(unet["transformer_layers_per_block"], nlohmann::json::array({1, 2}));
  EXPECT_EQ(unet["cross_attention_dim"], 32 + 48);
  EXPECT_EQ(unet["use_linear_projection"], true);
  EXPECT_EQ(read_json(folder / "vae" / "config.json")["scaling_factor"], 0.13025);
  const auto text_encoder_2 = read_json(folder / "text_encoder_2" / "config.json");
  EXPECT_EQ(text_encoder_2["architectures"], nlohmann::json::array({"CLIPTextModelWithProjection"}));
  EXPECT_EQ(text_encoder_2["projection_dim"], 16);
  EXPECT_EQ(text_encoder_2["hidden_act"], "gelu");
  EXPECT_EQ(read_json(folder / "text_encoder" / "config.json")["hidden_act"], "quick_gelu");
  EXPECT_EQ(read_json(folder / "model_index.json")["_class_name"], "StableDiffusionXLPipeline");
  EXPECT_EQ(read_json(folder / "scheduler" / "scheduler_config.json")["_class_name"], "EulerDiscreteScheduler");
  expect_diffusers_agrees({"folder=" + folder.string()});
}

TEST(SdxlWeightsIo, AnSdxlFileForAModelWithOneTextEncoderIsRefusedByName) {
  anchor_builtin_plugins();
  const fs::path dir = test::scratch_dir();
  const std::string single = (dir / "xl.safetensors").string();
  convert("--input " + reference().string() + " --output " + single);
  for (const bool strict : {true, false}) {
    StableDiffusionOptions options = testing::tiny_options("");
    options.set_weights(single);
    options.set_strict_weights(strict);
    try {
      StableDiffusionModel model(options, PluginContext{});
      FAIL() << "expected FormatError (strict " << strict << ")";
    } catch (const FormatError& error) {
      const std::string what = error.what();
      EXPECT_NE(what.find("SDXL"), std::string::npos) << what;
      EXPECT_NE(what.find("text_encoder_2"), std::string::npos) << what;
      EXPECT_NE(what.find("unet.add_embedding.linear_1.weight"), std::string::npos) << what;  // named as extra
    }
  }
  // --tokenizer-2 is for SDXL only.
  std::string out;
  EXPECT_EQ(test::run_command(sdconvert() + " --input " + (test::fixture_dir("weights_tiny") / "diffusers").string() +
                                  " --output " + (dir / "v1").string() + " --tokenizer-2 " +
                                  (reference() / "tokenizer_2").string(), &out), 2) << out;
  EXPECT_NE(out.find("--tokenizer-2"), std::string::npos) << out;
}

}  // namespace
}  // namespace sdtrain
