// The original single-file layouts of SD 2.x and SDXL end to end, on the sampling fixture's tiny
// pipelines. SD 2.x (gelu text encoder, per-block heads, linear projections, v-prediction):
// sdconvert writes cond_stage_model.model.* as OpenCLIP names it, diffusers' own single-file
// conversion and from_single_file read it back to the same weights, the round trip to a diffusers
// folder is bit for bit, and sdsample draws diffusers' image from the single file; a file that
// cannot tell its prediction type is refused where it matters, naming --prediction-type. SDXL:
// sdsample draws StableDiffusionXLPipeline's images from sdconvert's single file, and refuses
// text encoders whose widths do not fit the UNet, naming both.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include <nlohmann/json.hpp>

#include "framework/data/image_codec.h"
#include "framework/io/safetensors_reader.h"
#include "framework/util/file_util.h"
#include "plugins/models/stable_diffusion/weights/sd_weights_io.h"
#include "tests/common/reference_check.h"
#include "tests/common/test_env.h"

namespace fs = std::filesystem;

namespace sdtrain {
namespace {

fs::path fixture() { return test::fixture_dir("sampling_reference"); }
fs::path pipeline() { return fixture() / "pipeline_sd2"; }
std::string tool(const char* name) { return (test::binary_dir() / "bin" / name).string(); }

/// A fixture pipeline converted by sdconvert into `dir`: .safetensors (the configs in its
/// metadata) and from that a .ckpt (no configs).
struct SingleFiles {
  fs::path safetensors, ckpt;
};

SingleFiles convert_into(const fs::path& dir, const fs::path& source = pipeline()) {
  SingleFiles out{dir / "model.safetensors", dir / "model.ckpt"};
  std::string log;
  EXPECT_EQ(test::run_command(tool("sdconvert") + " --input " + source.string() + " --output " +
                                  out.safetensors.string(), &log), 0) << log;
  EXPECT_EQ(test::run_command(tool("sdconvert") + " --input " + out.safetensors.string() + " --output " +
                                  out.ckpt.string(), &log), 0) << log;
  return out;
}

nlohmann::json fixture_cases() {
  std::ifstream in(fixture() / "cases.json");
  return nlohmann::json::parse(in);
}

/// The fixture's case `name` (fails the test when there is none).
nlohmann::json fixture_case(const std::string& name) {
  const nlohmann::json all = fixture_cases();  // a temporary's member would dangle in the loop
  for (const auto& c : all["cases"]) {
    if (c["name"] == name) return c;
  }
  ADD_FAILURE() << "the fixture has no case " << name;
  return {};
}

/// sdsample drawing case `c` from `model` into `outdir`, `n` images, `extra` flags appended.
std::string sdsample_command(const nlohmann::json& c, const fs::path& model, const fs::path& outdir, int n,
                             const std::string& extra = "") {
  const std::string size = std::to_string(fixture_cases()["size"].get<int>());
  std::string command = tool("sdsample") + " --model " + model.string() + " --prompt '" +
                        c["prompt"].get<std::string>() + "' --n-samples " + std::to_string(n) + " --steps " +
                        std::to_string(c["steps"].get<int>()) + " --scale " + std::to_string(c["scale"].get<double>()) +
                        " --sampler " + c.value("sampler", c["name"].get<std::string>()) + " --seed " +
                        std::to_string(c["seed"].get<int>()) + " --H " + size + " --W " + size +
                        " --device cpu --outdir " + outdir.string() + extra;
  if (!c["negative"].get<std::string>().empty()) command += " --negative-prompt '" + c["negative"].get<std::string>() + "'";
  if (c.contains("rescale")) command += " --guidance-rescale " + std::to_string(c["rescale"].get<double>());
  return command;
}

/// The images sdsample wrote into `outdir` are the fixture's reference images of case `c`.
void expect_reference_images(const nlohmann::json& c, const fs::path& outdir) {
  for (int i = 0; i < c["n"].get<int>(); ++i) {
    char file[16];
    std::snprintf(file, sizeof(file), "%05d.png", i);
    const Image ours = read_image_file((outdir / "samples" / file).string(), 0);
    const std::string name = c["name"].get<std::string>() + "_" + std::to_string(i) + ".png";
    EXPECT_GE(test::psnr(ours, read_image_file((fixture() / "reference" / name).string(), 0)), 40.0) << name;
  }
}

/// check_original.py against the fixture's pipeline; expects "OK".
void expect_diffusers_agrees(const std::vector<std::string>& checks) {
  test::expect_reference_check("weights/check_original.py", pipeline(), checks);
}

TEST(Sd2SingleFile, OpenClipLayoutThatDiffusersReads) {
  const SingleFiles files = convert_into(test::scratch_dir());
  SafetensorsReader file(files.safetensors.string());
  const auto& fused = file.entry("cond_stage_model.model.transformer.resblocks.0.attn.in_proj_weight");
  EXPECT_EQ(fused.shape, (std::vector<int64_t>{96, 32}));  // q, k and v of width 32 in one tensor
  EXPECT_TRUE(file.contains("cond_stage_model.model.positional_embedding"));
  EXPECT_TRUE(file.contains("cond_stage_model.model.ln_final.weight"));
  EXPECT_FALSE(file.contains("cond_stage_model.model.transformer.resblocks.0.attn.q_proj.weight"));
  for (const auto& name : file.names()) {
    EXPECT_NE(name.rfind("cond_stage_model.transformer.", 0), 0u) << name << ": SD v1's CLIP layout in an SD 2 file";
  }
  EXPECT_EQ(file.entry("model.diffusion_model.input_blocks.1.1.proj_in.weight").shape.size(), 2u);  // linear
  expect_diffusers_agrees({"file=" + files.safetensors.string(), "file=" + files.ckpt.string()});
}

TEST(Sd2SingleFile, BackToADiffusersFolderBitForBitWithThePredictionTypeGiven) {
  const fs::path dir = test::scratch_dir();
  const SingleFiles files = convert_into(dir);
  std::string out;
  // The .ckpt carries no scheduler config: a folder needs one.
  const std::string refused = (dir / "refused").string();
  EXPECT_EQ(test::run_command(tool("sdconvert") + " --input " + files.ckpt.string() + " --output " + refused, &out), 2)
      << out;
  EXPECT_NE(out.find("--prediction-type"), std::string::npos) << out;
  EXPECT_FALSE(fs::exists(refused));

  // From the .safetensors, whose metadata holds the configs (norm_num_groups 16, which no shape
  // shows), so diffusers can build the folder's networks; the flag rewrites the prediction type.
  const std::string folder = (dir / "back").string();
  ASSERT_EQ(test::run_command(tool("sdconvert") + " --input " + files.safetensors.string() + " --output " + folder +
                                  " --prediction-type v_prediction", &out), 0) << out;
  const SdWeights want = load_sd_weights(pipeline().string());
  const SdWeights got = load_sd_weights(folder);
  for (const auto& [component, got_map, want_map] :
       {std::tuple{"unet", &got.unet, &want.unet}, std::tuple{"vae", &got.vae, &want.vae},
        std::tuple{"text_encoder", &got.text_encoder, &want.text_encoder}}) {
    ASSERT_EQ(got_map->size(), want_map->size()) << component;
    for (const auto& [name, tensor] : *want_map) {
      ASSERT_TRUE(got_map->count(name)) << component << "." << name;
      EXPECT_TRUE(torch::equal(got_map->at(name), tensor)) << component << "." << name;
    }
  }
  const auto scheduler = nlohmann::json::parse(read_file((fs::path(folder) / "scheduler" / "scheduler_config.json").string()));
  EXPECT_EQ(scheduler["prediction_type"], "v_prediction");
  const auto text_encoder = nlohmann::json::parse(read_file((fs::path(folder) / "text_encoder" / "config.json").string()));
  EXPECT_EQ(text_encoder["hidden_act"], "gelu");
  // The tokenizer sdconvert writes pads as OpenCLIP's does; diffusers loads the whole folder.
  const auto tokenizer = nlohmann::json::parse(read_file((fs::path(folder) / "tokenizer" / "tokenizer_config.json").string()));
  EXPECT_EQ(tokenizer["pad_token"], "!");
  expect_diffusers_agrees({"folder=" + folder});
}

TEST(Sd2SingleFile, SdsampleDrawsDiffusersImageFromTheSingleFile) {
  const nlohmann::json sd2_case = fixture_case("sd2_ddim_v");
  const fs::path dir = test::scratch_dir();
  const SingleFiles files = convert_into(dir);
  const fs::path outdir = dir / "from_single_file";
  auto command = [&](const fs::path& model, const std::string& extra, const fs::path& to, int n) {
    return sdsample_command(sd2_case, model, to, n, extra);
  };
  std::string out;
  ASSERT_EQ(test::run_command(command(files.safetensors, "", outdir, sd2_case["n"].get<int>()), &out), 0) << out;
  expect_reference_images(sd2_case, outdir);
  // The .ckpt carries no scheduler config: refused without --prediction-type.
  const fs::path refused = dir / "refused";
  EXPECT_EQ(test::run_command(command(files.ckpt, "", refused, 1), &out), 2) << out;
  EXPECT_NE(out.find("--prediction-type"), std::string::npos) << out;
  EXPECT_FALSE(fs::exists(refused / "samples"));
  EXPECT_EQ(test::run_command(command(files.ckpt, " --prediction-type x", refused, 1), &out), 2) << out;
  EXPECT_NE(out.find("--prediction-type 'x'"), std::string::npos) << out;
  // The flag overrides what the file says: read as predicting noise, the model draws another image.
  const fs::path as_epsilon = dir / "as_epsilon";
  ASSERT_EQ(test::run_command(command(files.safetensors, " --prediction-type epsilon", as_epsilon, 1), &out), 0) << out;
  const Image other = read_image_file((as_epsilon / "samples" / "00000.png").string(), 0);
  EXPECT_LT(test::psnr(other, read_image_file((fixture() / "reference" / "sd2_ddim_v_0.png").string(), 0)), 30.0);
}

TEST(SdxlSingleFile, SdsampleDrawsStableDiffusionXLPipelinesImagesFromTheSingleFile) {
  const fs::path dir = test::scratch_dir();
  const SingleFiles files = convert_into(dir, fixture() / "pipeline_xl");
  SafetensorsReader file(files.safetensors.string());
  EXPECT_TRUE(file.contains("conditioner.embedders.1.model.text_projection"));
  for (const char* name : {"sdxl_euler", "sdxl_ddim"}) {
    const nlohmann::json c = fixture_case(name);
    const fs::path outdir = dir / name;
    std::string out;
    ASSERT_EQ(test::run_command(sdsample_command(c, files.safetensors, outdir, c["n"].get<int>()), &out), 0) << out;
    expect_reference_images(c, outdir);
  }
}

/// A copy of the fixture's SDXL pipeline in `dir` with `key` of `component`'s config.json set to
/// `value`.
fs::path xl_with_config(const fs::path& dir, const std::string& component, const std::string& key, int value) {
  const fs::path copy = dir / ("xl_" + component + "_" + key);
  fs::copy(fixture() / "pipeline_xl", copy, fs::copy_options::recursive);
  const fs::path config = copy / component / "config.json";
  nlohmann::json json = nlohmann::json::parse(read_file(config.string()));
  json[key] = value;
  std::ofstream(config) << json.dump(2);
  return copy;
}

TEST(SdxlSingleFile, TextEncodersThatDoNotFitTheUnetAreRefusedNamingBoth) {
  const fs::path dir = test::scratch_dir();
  const nlohmann::json c = fixture_case("sdxl_euler");
  std::string out;
  EXPECT_EQ(test::run_command(sdsample_command(c, xl_with_config(dir, "text_encoder_2", "projection_dim", 20),
                                               dir / "out", 1), &out), 2) << out;
  EXPECT_NE(out.find("(unet/config.json): unet.projection_class_embeddings_input_dim: 64 must equal "
                     "text_encoder_2.projection_dim 20 + 6 x unet.addition_time_embed_dim 8 = 68"),
            std::string::npos) << out;
  EXPECT_EQ(test::run_command(sdsample_command(c, xl_with_config(dir, "unet", "cross_attention_dim", 96),
                                               dir / "out", 1), &out), 2) << out;
  EXPECT_NE(out.find("(unet/config.json): unet.cross_attention_dim: 96 must equal text_encoder.hidden_size 32 + "
                     "text_encoder_2.hidden_size 48 = 80"),
            std::string::npos) << out;
  EXPECT_FALSE(fs::exists(dir / "out" / "samples"));
}

}  // namespace
}  // namespace sdtrain
