// Conversions between the diffusers folder, the original single .safetensors and .ckpt, checked
// against diffusers' own conversion functions (check_original.py) and bit for bit.
#include <gtest/gtest.h>

#include <filesystem>

#include "framework/io/safetensors_reader.h"
#include "framework/io/safetensors_writer.h"
#include "framework/util/file_util.h"
#include "plugins/models/stable_diffusion/weights/sd_tokenizer_files.h"
#include "plugins/models/stable_diffusion/weights/sd_weights_io.h"
#include "sdtrain/errors.h"
#include "tests/common/reference_check.h"
#include "tests/common/test_env.h"

namespace sdtrain {
namespace {
namespace fs = std::filesystem;

fs::path reference() { return test::fixture_dir("weights_tiny") / "diffusers"; }
std::string sdconvert() { return (test::binary_dir() / "bin" / "sdconvert").string(); }

/// Runs check_original.py over `checks` (see its docstring); expects "OK".
void expect_diffusers_agrees(const std::vector<std::string>& checks) {
  test::expect_reference_check("weights/check_original.py", reference(), checks);
}

int run_sdconvert(const std::string& args, std::string* out) { return test::run_command(sdconvert() + " " + args, out); }

void expect_equal_maps(const NamedTensors& got, const NamedTensors& want, const std::string& what, double offset = 0) {
  ASSERT_EQ(got.size(), want.size()) << what;
  for (const auto& [name, tensor] : want) {
    auto it = got.find(name);
    ASSERT_NE(it, got.end()) << what << ": " << name;
    torch::Tensor expected = offset == 0 ? tensor : tensor + offset;
    EXPECT_EQ(it->second.scalar_type(), expected.scalar_type()) << what << ": " << name;
    EXPECT_TRUE(torch::equal(it->second, expected)) << what << ": " << name;
  }
}

TEST(SdWeightsIo, ReadsTheDiffusersFolder) {
  WeightIssues issues;
  SdWeights w = load_sd_weights(reference().string(), {}, &issues);
  EXPECT_TRUE(issues.empty()) << issues.describe();
  SafetensorsReader unet((reference() / "unet" / "diffusion_pytorch_model.safetensors").string());
  EXPECT_EQ(w.unet.size(), unet.size());
  EXPECT_TRUE(torch::equal(w.unet.at("down_blocks.1.attentions.0.proj_in.weight"),
                           unet.tensor("down_blocks.1.attentions.0.proj_in.weight")));
  // transformers 5 saves CLIPTextModel without "text_model."; sdtrain's names carry it.
  EXPECT_TRUE(w.text_encoder.count("text_model.embeddings.token_embedding.weight"));
  EXPECT_TRUE(w.configs.count("unet") && w.configs.count("vae") && w.configs.count("text_encoder"));
  EXPECT_FALSE(w.tokenizer_dir.empty());
  EXPECT_TRUE(w.unet_ema.empty());
}

TEST(SdWeightsIo, OriginalSafetensorsMatchesDiffusersConversion) {
  const auto dir = test::scratch_dir();
  SdWeights w = load_sd_weights(reference().string());
  save_sd_weights(w, (dir / "model.safetensors").string(), SdFormat::kSafetensors);
  SafetensorsReader file((dir / "model.safetensors").string());
  EXPECT_TRUE(file.contains("model.diffusion_model.input_blocks.0.0.weight"));
  EXPECT_TRUE(file.contains("first_stage_model.encoder.mid.attn_1.q.weight"));
  EXPECT_EQ(file.entry("first_stage_model.encoder.mid.attn_1.q.weight").shape.size(), 4u);
  EXPECT_TRUE(file.contains("cond_stage_model.transformer.text_model.embeddings.position_ids"));
  expect_diffusers_agrees({"file=" + (dir / "model.safetensors").string()});
  // Never overwrites.
  EXPECT_THROW(save_sd_weights(w, (dir / "model.safetensors").string(), SdFormat::kSafetensors), FormatError);
}

TEST(SdWeightsIo, SdconvertRoundTripIsBitIdentical) {
  const auto dir = test::scratch_dir();
  std::string out;
  const std::string single = (dir / "single.safetensors").string();
  const std::string ckpt = (dir / "single.ckpt").string();
  const std::string folder = (dir / "back").string();
  ASSERT_EQ(run_sdconvert("--input " + reference().string() + " --output " + single, &out), 0) << out;
  ASSERT_EQ(run_sdconvert("--input " + single + " --output " + ckpt, &out), 0) << out;
  ASSERT_EQ(run_sdconvert("--input " + ckpt + " --output " + folder + " --tokenizer " +
                              (reference() / "tokenizer").string(), &out), 0) << out;
  SdWeights want = load_sd_weights(reference().string());
  SdWeights got = load_sd_weights(folder);
  expect_equal_maps(got.unet, want.unet, "unet");
  expect_equal_maps(got.vae, want.vae, "vae");
  expect_equal_maps(got.text_encoder, want.text_encoder, "text_encoder");
  // The configs went through the single file's metadata; the .ckpt lost them (inferred).
  EXPECT_TRUE(fs::exists(fs::path(folder) / "unet" / "config.json"));
  // Inferred configs (attention_head_dim 8, as the fixture) load in diffusers with the tokenizer.
  expect_diffusers_agrees({"file=" + ckpt + ",nopipe", "folder=" + folder});
}

TEST(SdWeightsIo, LightningCkptWithEma) {
  const auto dir = test::scratch_dir();
  std::string out;
  const std::string single = (dir / "single.safetensors").string();
  const std::string ckpt = (dir / "lightning.ckpt").string();
  save_sd_weights(load_sd_weights(reference().string()), single, SdFormat::kSafetensors);
  const std::string make = test::env_or_fail("SDTRAIN_PYTHON") + " " +
                           (test::source_dir() / "tests" / "weights" / "make_lightning_ckpt.py").string() +
                           " --single " + single + " --out " + ckpt + " --ema-offset 1.0";
  ASSERT_EQ(test::run_command(make, &out), 0) << out;

  SdWeights ref = load_sd_weights(reference().string());
  SdWeights plain = load_sd_weights(ckpt);
  expect_equal_maps(plain.unet, ref.unet, "unet");
  expect_equal_maps(plain.unet_ema, ref.unet, "unet_ema", 1.0);
  expect_equal_maps(plain.vae, ref.vae, "vae");
  EXPECT_TRUE(plain.extras.count("model_ema.decay") && plain.extras.count("model_ema.num_updates") &&
              plain.extras.count("betas"));

  SdLoadOptions ema;
  ema.use_ema = true;
  SdWeights taken = load_sd_weights(ckpt, ema);
  expect_equal_maps(taken.unet, ref.unet, "unet (--use-ema)", 1.0);
  EXPECT_TRUE(taken.unet_ema.empty());

  // Without --use-ema the EMA copy is kept; diffusers' extract_ema finds it.
  ASSERT_EQ(run_sdconvert("--input " + ckpt + " --output " + (dir / "full.ckpt").string(), &out), 0) << out;

  // With --use-ema only the EMA weights remain, as the UNet.
  ASSERT_EQ(run_sdconvert("--use-ema --input " + ckpt + " --output " + (dir / "ema.safetensors").string(), &out), 0) << out;
  SafetensorsReader ema_file((dir / "ema.safetensors").string());
  for (const auto& name : ema_file.names()) EXPECT_NE(name.rfind("model_ema.", 0), 0u) << name;
  expect_diffusers_agrees({"file=" + (dir / "full.ckpt").string() + ",ema,offset=1,nopipe",
                           "file=" + (dir / "full.ckpt").string() + ",nopipe",
                           "file=" + (dir / "ema.safetensors").string() + ",offset=1"});
}

TEST(SdWeightsIo, HalfGivesFloat16) {
  const auto dir = test::scratch_dir();
  std::string out;
  const std::string single = (dir / "half.safetensors").string();
  ASSERT_EQ(run_sdconvert("--half --input " + reference().string() + " --output " + single, &out), 0) << out;
  SafetensorsReader file(single);
  for (const auto& name : file.names()) {
    const auto dtype = file.tensor(name).scalar_type();
    EXPECT_TRUE(dtype == torch::kFloat16 || dtype == torch::kInt64) << name;
  }
  ASSERT_EQ(run_sdconvert("--half --input " + reference().string() + " --output " + (dir / "half").string(), &out), 0);
  SdWeights folder = load_sd_weights((dir / "half").string());
  EXPECT_EQ(folder.unet.at("conv_in.weight").scalar_type(), torch::kFloat16);
  expect_diffusers_agrees({"file=" + single + ",half,nopipe", "folder=" + (dir / "half").string() + ",half"});
}

TEST(SdWeightsIo, BadInputsExitTwoWithAMessage) {
  const auto dir = test::scratch_dir();
  std::string out;
  EXPECT_EQ(run_sdconvert("--input " + (dir / "none.ckpt").string() + " --output " + (dir / "x.safetensors").string(), &out), 2);
  EXPECT_NE(out.find("no such file"), std::string::npos) << out;
  fs::create_directories(dir / "empty");
  EXPECT_EQ(run_sdconvert("--input " + (dir / "empty").string() + " --output " + (dir / "x.safetensors").string(), &out), 2);
  EXPECT_NE(out.find("no model_index.json"), std::string::npos) << out;
  test::write_text(dir / "garbage.safetensors", "not a safetensors file at all");
  EXPECT_EQ(run_sdconvert("--input " + (dir / "garbage.safetensors").string() + " --output " + (dir / "x.ckpt").string(), &out), 2);
  EXPECT_NE(out.find("garbage.safetensors"), std::string::npos) << out;
  EXPECT_EQ(run_sdconvert("--input " + reference().string() + " --output " + reference().string() + " --to ckpt", &out), 2);
  EXPECT_NE(out.find("refusing to overwrite"), std::string::npos) << out;
  test::write_text(dir / "exists.ckpt", "x");
  EXPECT_EQ(run_sdconvert("--input " + reference().string() + " --output " + (dir / "exists.ckpt").string(), &out), 2);
  EXPECT_NE(out.find("refusing to overwrite"), std::string::npos) << out;
  EXPECT_EQ(run_sdconvert("--input " + reference().string() + " --output " + (dir / "y").string() + " --to onnx", &out), 2);
  EXPECT_NE(out.find("onnx"), std::string::npos) << out;
  EXPECT_EQ(run_sdconvert("--output " + (dir / "y").string(), &out), 2);
  EXPECT_FALSE(fs::exists(dir / "x.safetensors") || fs::exists(dir / "x.ckpt") || fs::exists(dir / "y"));
}

TEST(SdWeightsIo, StrictRefusesUnknownKeysNonStrictWarns) {
  const auto dir = test::scratch_dir();
  SdWeights w = load_sd_weights(reference().string());
  NamedTensors original = sd_weights_to_original(w);
  original["model.diffusion_model.bogus_block.weight"] = torch::zeros({2});
  original["something_else"] = torch::zeros({2});
  original.erase("first_stage_model.decoder.up.0.block.1.conv2.weight");
  std::vector<std::pair<std::string, torch::Tensor>> list(original.begin(), original.end());
  const std::string path = (dir / "odd.safetensors").string();
  save_safetensors(path, list);
  std::string out;
  EXPECT_EQ(run_sdconvert("--strict --input " + path + " --output " + (dir / "a.ckpt").string(), &out), 2);
  EXPECT_NE(out.find("model.diffusion_model.bogus_block.weight"), std::string::npos) << out;
  EXPECT_NE(out.find("something_else"), std::string::npos) << out;
  EXPECT_FALSE(fs::exists(dir / "a.ckpt"));
  WeightIssues issues;
  SdLoadOptions lenient;
  lenient.strict = false;
  SdWeights loaded = load_sd_weights(path, lenient, &issues);
  EXPECT_EQ(issues.unexpected.size(), 2u) << issues.describe();
  EXPECT_EQ(loaded.vae.count("decoder.up_blocks.1.resnets.1.conv2.weight"), 0u);
  EXPECT_EQ(run_sdconvert("--input " + path + " --output " + (dir / "b.ckpt").string(), &out), 0) << out;
  EXPECT_NE(out.find("something_else"), std::string::npos) << out;
}

TEST(SdWeightsIo, ClipTokenizerFilesLoadInTransformers) {
  const auto dir = test::scratch_dir();
  write_clip_tokenizer_files(dir.string());
  std::string out;
  // Well-known CLIP ids: <|startoftext|> a photo of a cat <|endoftext|>.
  const std::string command = test::env_or_fail("SDTRAIN_PYTHON") +
                              " -c \"import sys; from transformers import CLIPTokenizer; "
                              "t = CLIPTokenizer.from_pretrained(sys.argv[1]); ids = t('a photo of a cat').input_ids; "
                              "print(len(t), ids); sys.exit(0 if ids == [49406, 320, 1125, 539, 320, 2368, 49407] "
                              "and len(t) == 49408 else 1)\" " + dir.string();
  EXPECT_EQ(test::run_command(command, &out), 0) << out;
}

TEST(SdWeightsIo, FolderWithoutTokenizerSourceOmitsIt) {
  const auto dir = test::scratch_dir();
  std::string out;
  SdWeights w = load_sd_weights(reference().string());
  w.tokenizer_dir.clear();
  save_sd_weights(w, (dir / "m.ckpt").string(), SdFormat::kCkpt);
  ASSERT_EQ(run_sdconvert("--input " + (dir / "m.ckpt").string() + " --output " + (dir / "f").string(), &out), 0) << out;
  EXPECT_FALSE(fs::exists(dir / "f" / "tokenizer"));
  EXPECT_NE(out.find("no tokenizer written"), std::string::npos) << out;
  const std::string index = read_file((dir / "f" / "model_index.json").string());
  EXPECT_NE(index.find("\"requires_safety_checker\": false"), std::string::npos) << index;
  // No temporary folder is left behind.
  for (const auto& entry : fs::directory_iterator(dir)) {
    EXPECT_EQ(entry.path().filename().string().find(".tmp-"), std::string::npos) << entry.path();
  }
}

}  // namespace
}  // namespace sdtrain
