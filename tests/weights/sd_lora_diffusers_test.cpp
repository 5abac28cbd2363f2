// LoRA adapter files against the reference loaders on tiny random SD v1 and SDXL pipelines: files written
// by sdtrain load in diffusers' pipe.load_lora_weights with nothing reported and every module at
// its own scale, and `sdsample --lora` draws what StableDiffusionPipeline draws with them
// (check_lora.py sample); `sdconvert --merge-lora` gives fuse_lora's weights (check_lora.py fuse);
// lycoris-lora's LoCon files merge as lycoris merges them; sdconvert converts adapters both ways.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include <nlohmann/json.hpp>

#include "framework/data/image_codec.h"
#include "framework/io/safetensors_reader.h"
#include "framework/io/safetensors_writer.h"
#include "framework/util/file_util.h"
#include "framework/util/strings.h"
#include "plugins/models/stable_diffusion/sd_pipeline.h"
#include "plugins/models/stable_diffusion/weights/sd_lora_format.h"
#include "tests/common/test_env.h"
#include "tests/weights/lora_test_util.h"

namespace sdtrain {
namespace {
namespace fs = std::filesystem;

fs::path fixture() { return test::fixture_dir("lora_reference"); }
std::string pipeline_dir() { return (fixture() / "pipeline").string(); }
std::string xl_pipeline_dir() { return (fixture() / "pipeline_xl").string(); }
std::string bin(const std::string& tool) { return (test::binary_dir() / "bin" / tool).string(); }
std::string quoted(const std::string& text) { return "'" + text + "'"; }

// One sampling case: small enough to stay quick, long enough for the adapter to matter.
const char* const kPrompt = "a red circle on a white background";
constexpr int kSteps = 10;
constexpr int kSize = 64;
constexpr int kSeed = 42;

using test::psnr;

/// A fixture pipeline's targets (from the networks sdsample loads).
std::map<std::string, LoraTarget> fixture_targets(const std::string& pipeline = pipeline_dir()) {
  auto loaded = SdPipeline::load(pipeline, false);
  return lora_targets(loaded->networks());
}

/// sdsample's first image for the case, with `extra` arguments (the adapters); `sampler` is the
/// pipeline's own scheduler (SD v1 fixture: PNDM; SDXL: Euler).
Image sdsample_image(const fs::path& outdir, const std::string& extra, const std::string& pipeline = pipeline_dir(),
                     const std::string& sampler = "pndm") {
  const std::string command = bin("sdsample") + " --model " + quoted(pipeline) + " --prompt " + quoted(kPrompt) +
                              " --n-samples 1 --steps " + std::to_string(kSteps) + " --scale 7.5 --sampler " + sampler +
                              " --seed " +
                              std::to_string(kSeed) + " --H " + std::to_string(kSize) + " --W " + std::to_string(kSize) +
                              " --device cpu --no-grid --outdir " + quoted(outdir.string()) + extra;
  std::string output;
  EXPECT_EQ(test::run_command(command, &output), 0) << command << "\n" << output;
  return read_image_file((outdir / "samples" / "00000.png").string(), 0);
}

/// check_lora.py sample: diffusers loads `file` (scales checked against the kohya file `expect`
/// unless it is empty) and draws the case at `weight`; returns its image.
Image diffusers_image(const fs::path& dir, const std::string& file, const std::string& expect, double weight,
                      const std::string& pipeline = pipeline_dir()) {
  const std::string command = test::env_or_fail("SDTRAIN_PYTHON") + " " +
                              (test::source_dir() / "tests" / "weights" / "check_lora.py").string() +
                              " sample --pipeline " + quoted(pipeline) + " --lora " + quoted(file) +
                              (expect.empty() ? "" : " --expect " + quoted(expect)) + " --weight " + std::to_string(weight) +
                              " --prompt " + quoted(kPrompt) +
                              " --steps " + std::to_string(kSteps) + " --scale 7.5 --seed " + std::to_string(kSeed) +
                              " --size " + std::to_string(kSize) + " --out " + quoted((dir / "diffusers").string());
  std::string output;
  EXPECT_EQ(test::run_command(command, &output), 0) << command << "\n" << output;
  EXPECT_NE(output.find("OK"), std::string::npos) << output;
  return read_image_file((dir / "diffusers_0.png").string(), 0);
}

/// sdsample with the adapter equals diffusers with it, and differs from the image without it.
void expect_same_image_as_diffusers(LoraFormat format, double weight, bool attention_alphas) {
  const fs::path dir = test::scratch_dir();
  const auto targets = fixture_targets();
  const LoraFile lora = test::random_lora(targets, 11, 0.2, torch::kFloat32, attention_alphas);
  const std::string expect = (dir / "expect.safetensors").string();
  write_lora_file(lora, expect, LoraFormat::kKohya, targets);
  std::string file = expect;
  if (format == LoraFormat::kPeft) {
    file = (dir / "pytorch_lora_weights.safetensors").string();
    write_lora_file(lora, file, LoraFormat::kPeft, targets);
  }
  const Image reference = diffusers_image(dir, file, expect, weight);
  const Image ours = sdsample_image(dir / "with", " --lora " + quoted(file + ":" + std::to_string(weight)));
  const Image base = sdsample_image(dir / "without", "");
  const double db = psnr(ours, reference);
  const double base_db = psnr(base, reference);
  std::cout << lora_format_name(format) << ": PSNR " << db << " dB against diffusers with the adapter, " << base_db
            << " dB without it\n";
  EXPECT_GE(db, 40.0);
  EXPECT_LT(base_db, 30.0) << "the adapter barely changes the image: the comparison would prove little";
}

TEST(LoraDiffusers, KohyaFileLoadsInDiffusersAndSamplesTheSame) {
  expect_same_image_as_diffusers(LoraFormat::kKohya, 1.0, /*attention_alphas=*/false);
}

TEST(LoraDiffusers, PeftFileLoadsInDiffusersAndSamplesTheSame) {
  expect_same_image_as_diffusers(LoraFormat::kPeft, 0.8, /*attention_alphas=*/true);
}

TEST(LoraDiffusers, SdconvertMergeGivesFuseLoraWeights) {
  const fs::path dir = test::scratch_dir();
  const auto targets = fixture_targets();
  const std::string kohya = (dir / "a.safetensors").string();
  const std::string peft = (dir / "b.safetensors").string();
  write_lora_file(test::random_lora(targets, 12, 0.1, torch::kFloat32, false), kohya, LoraFormat::kKohya, targets);
  write_lora_file(test::random_lora(targets, 13), peft, LoraFormat::kPeft, targets);
  const std::string merged = (dir / "merged").string();
  std::string output;
  const std::string convert = bin("sdconvert") + " --input " + quoted(pipeline_dir()) + " --output " + quoted(merged) +
                              " --merge-lora " + quoted(kohya + ":0.7") + " --merge-lora " + quoted(peft);
  ASSERT_EQ(test::run_command(convert, &output), 0) << output;
  const std::string check = test::env_or_fail("SDTRAIN_PYTHON") + " " +
                            (test::source_dir() / "tests" / "weights" / "check_lora.py").string() + " fuse --pipeline " +
                            quoted(pipeline_dir()) + " --lora " + quoted(kohya + ":0.7") + " --lora " +
                            quoted(peft + ":1.0") + " --merged " + quoted(merged);
  EXPECT_EQ(test::run_command(check, &output), 0) << check << "\n" << output;
  EXPECT_NE(output.find("OK"), std::string::npos) << output;
  std::cout << output;
}

TEST(LoraDiffusers, LycorisLoconMergesAsLycorisMergesIt) {
  const auto pipeline = SdPipeline::load(pipeline_dir(), false);
  SdNetworks networks = pipeline->networks();
  const auto targets = lora_targets(networks);
  std::ifstream in(fixture() / "lycoris.json");
  const auto info = nlohmann::json::parse(in);
  const double multiplier = info["multiplier"].get<double>();
  const LoraFile unet = read_lora_file((fixture() / "lycoris_unet.safetensors").string(), targets);
  const LoraFile text_encoder = read_lora_file((fixture() / "lycoris_text_encoder.safetensors").string(), targets);
  EXPECT_EQ(unet.tensors.size(), 3 * info["unet_modules"].get<std::size_t>());
  EXPECT_EQ(text_encoder.tensors.size(), 3 * info["text_encoder_modules"].get<std::size_t>());
  merge_lora(networks, unet, multiplier, targets);
  merge_lora(networks, text_encoder, multiplier, targets);
  SafetensorsReader reference((fixture() / "lycoris_merged.safetensors").string());
  int compared = 0;
  for (const auto& [component, module] : {std::pair<std::string, torch::nn::Module*>{"unet", networks.unet.get()},
                                          {"text_encoder", networks.text_encoder.get()}}) {
    for (const auto& item : module->named_parameters()) {
      std::string key = component + "." + item.key();
      if (!reference.contains(key) && starts_with(item.key(), "text_model.")) key = component + "." + item.key().substr(11);
      ASSERT_TRUE(reference.contains(key)) << key;
      const torch::Tensor want = reference.tensor(key).reshape(item.value().sizes());
      const double diff = (item.value() - want).abs().max().item<double>();
      EXPECT_LE(diff, 1e-6 + 1e-6 * want.abs().max().item<double>()) << key;
      ++compared;
    }
  }
  EXPECT_GT(compared, 100);
}

TEST(LoraDiffusers, SdconvertConvertsAdaptersBothWaysBitForBit) {
  const fs::path dir = test::scratch_dir();
  const auto targets = fixture_targets();
  const std::string kohya = (dir / "kohya.safetensors").string();
  write_lora_file(test::random_lora(targets, 14), kohya, LoraFormat::kKohya, targets);
  const std::string peft = (dir / "pytorch_lora_weights.safetensors").string();
  const std::string back = (dir / "back.safetensors").string();
  std::string output;
  const std::string base = " --base " + quoted(pipeline_dir());
  ASSERT_EQ(test::run_command(bin("sdconvert") + " --input " + quoted(kohya) + " --output " + quoted(peft) + " --to peft" + base,
                              &output),
            0)
      << output;
  ASSERT_EQ(test::run_command(bin("sdconvert") + " --input " + quoted(peft) + " --output " + quoted(back) + " --to kohya" + base,
                              &output),
            0)
      << output;
  EXPECT_EQ(read_file(back), read_file(kohya));
  EXPECT_TRUE(SafetensorsReader(peft).contains("unet.down_blocks.0.attentions.0.proj_in.lora_A.weight"));
  // A file that does not fit --base is refused, naming the key, and nothing is written.
  const std::string other = (dir / "other.safetensors").string();
  save_safetensors(other, {{"lora_unet_down_blocks_0_attentions_0_proj_in.lora_down.weight", torch::zeros({4, 320, 1, 1})},
                           {"lora_unet_down_blocks_0_attentions_0_proj_in.lora_up.weight", torch::zeros({320, 4, 1, 1})}});
  EXPECT_EQ(test::run_command(bin("sdconvert") + " --input " + quoted(other) + " --output " +
                                  quoted((dir / "out.safetensors").string()) + " --to peft" + base,
                              &output),
            2)
      << output;
  EXPECT_NE(output.find("'lora_unet_down_blocks_0_attentions_0_proj_in.lora_down.weight': shape [4, 320, 1, 1] does not fit"),
            std::string::npos)
      << output;
  EXPECT_FALSE(fs::exists(dir / "out.safetensors"));
}

TEST(LoraDiffusers, ToolsRefuseABadAdapterWithExitTwoNamingTheKey) {
  const fs::path dir = test::scratch_dir();
  const auto targets = fixture_targets();
  LoraFile lora = test::random_lora(targets, 15);
  const std::string bad_key = "lora_unet_mid_block_attentions_0_proj_out.lora_up.weight";
  lora.tensors.at(bad_key) = lora.tensors.at(bad_key).clone();
  lora.tensors.at(bad_key).view(-1)[0] = NAN;
  std::vector<std::pair<std::string, torch::Tensor>> list(lora.tensors.begin(), lora.tensors.end());
  const std::string file = (dir / "nan.safetensors").string();
  save_safetensors(file, list);
  std::string output;
  EXPECT_EQ(test::run_command(bin("sdsample") + " --model " + quoted(pipeline_dir()) + " --prompt x --steps 1 --H 32 --W 32 " +
                                  "--device cpu --outdir " + quoted((dir / "out").string()) + " --lora " + quoted(file),
                              &output),
            2)
      << output;
  EXPECT_NE(output.find(bad_key), std::string::npos) << output;
  EXPECT_FALSE(fs::exists(dir / "out" / "samples"));
  EXPECT_EQ(test::run_command(bin("sdconvert") + " --input " + quoted(pipeline_dir()) + " --output " +
                                  quoted((dir / "merged").string()) + " --merge-lora " + quoted(file + ":0.5"),
                              &output),
            2)
      << output;
  EXPECT_NE(output.find(bad_key), std::string::npos) << output;
  EXPECT_FALSE(fs::exists(dir / "merged"));
}

// SD 2.x (OpenCLIP's gelu text encoder, linear projections: kohya's SD v1 naming) and SDXL
// (kohya's LDM UNet paths, lora_te1_ / lora_te2_; PEFT's text_encoder_2): the pipelines'
// load_lora_weights take the files with nothing reported, and sdconvert merges as fuse_lora fuses,
// every text encoder included.
class LoraDiffusersFamily : public ::testing::TestWithParam<const char*> {};

TEST_P(LoraDiffusersFamily, SdconvertMergeGivesFuseLoraWeights) {
  const fs::path dir = test::scratch_dir();
  const std::string pipeline = (fixture() / GetParam()).string();
  const auto targets = fixture_targets(pipeline);
  const bool sdxl = targets.count("lora_te2_text_model_encoder_layers_0_self_attn_q_proj") > 0;
  const std::string kohya = (dir / "a.safetensors").string();
  const std::string peft = (dir / "b.safetensors").string();
  write_lora_file(test::random_lora(targets, 14, 0.1, torch::kFloat32, false), kohya, LoraFormat::kKohya, targets);
  write_lora_file(test::random_lora(targets, 15), peft, LoraFormat::kPeft, targets);
  const std::string merged = (dir / "merged").string();
  std::string output;
  const std::string convert = bin("sdconvert") + " --input " + quoted(pipeline) + " --output " + quoted(merged) +
                              " --merge-lora " + quoted(kohya + ":0.7") + " --merge-lora " + quoted(peft);
  ASSERT_EQ(test::run_command(convert, &output), 0) << output;
  const std::string check = test::env_or_fail("SDTRAIN_PYTHON") + " " +
                            (test::source_dir() / "tests" / "weights" / "check_lora.py").string() + " fuse --pipeline " +
                            quoted(pipeline) + " --lora " + quoted(kohya + ":0.7") + " --lora " + quoted(peft + ":1.0") +
                            " --merged " + quoted(merged) + " --expect-changed text_encoder" +
                            (sdxl ? " --expect-changed text_encoder_2" : "");
  EXPECT_EQ(test::run_command(check, &output), 0) << check << "\n" << output;
  EXPECT_NE(output.find("OK"), std::string::npos) << output;
  std::cout << output;
}

INSTANTIATE_TEST_SUITE_P(Pipelines, LoraDiffusersFamily, ::testing::Values("pipeline_sd2", "pipeline_xl"),
                         [](const auto& info) { return std::string(info.param).substr(9); });

TEST(LoraDiffusersXl, KohyaFileSamplesAsStableDiffusionXLPipeline) {
  const fs::path dir = test::scratch_dir();
  const auto targets = fixture_targets(xl_pipeline_dir());
  const std::string file = (dir / "sdxl_lora.safetensors").string();
  write_lora_file(test::random_lora(targets, 16, 0.2, torch::kFloat32, false), file, LoraFormat::kKohya, targets);
  const Image reference = diffusers_image(dir, file, "", 1.0, xl_pipeline_dir());
  const Image ours = sdsample_image(dir / "with", " --lora " + quoted(file), xl_pipeline_dir(), "euler");
  const Image base = sdsample_image(dir / "without", "", xl_pipeline_dir(), "euler");
  const double db = psnr(ours, reference);
  const double base_db = psnr(base, reference);
  std::cout << "SDXL kohya: PSNR " << db << " dB against diffusers with the adapter, " << base_db << " dB without it\n";
  EXPECT_GE(db, 40.0);
  EXPECT_LT(base_db, 30.0) << "the adapter barely changes the image: the comparison would prove little";
}

}  // namespace
}  // namespace sdtrain
