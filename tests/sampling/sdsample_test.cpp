// sdsample end to end against diffusers: a tiny random SD pipeline saved by diffusers, sampled by
// StableDiffusionPipeline (the fixture's reference PNGs) and by sdsample with the same prompt,
// seed, sampler, steps and scale must give the same images (PSNR >= 40 dB); the outputs carry
// their settings and never overwrite earlier ones; bad input exits 2 and writes nothing.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "framework/data/image_codec.h"
#include "framework/util/file_util.h"
#include "tests/common/test_env.h"

namespace fs = std::filesystem;

namespace sdtrain {
namespace {

fs::path fixture() { return test::fixture_dir("sampling_reference"); }
std::string sdsample_bin() { return (test::binary_dir() / "bin" / "sdsample").string(); }
std::string quoted(const std::string& text) { return "'" + text + "'"; }

nlohmann::json cases() {
  std::ifstream in(fixture() / "cases.json");
  return nlohmann::json::parse(in);
}

using test::psnr;

std::string command_for(const nlohmann::json& c, const fs::path& outdir, int size) {
  std::ostringstream command;
  command << sdsample_bin() << " --model " << quoted((fixture() / c.value("model", "pipeline")).string()) << " --prompt "
          << quoted(c["prompt"].get<std::string>()) << " --n-samples " << c["n"].get<int>() << " --steps "
          << c["steps"].get<int>() << " --scale " << c["scale"].get<double>() << " --sampler "
          << c.value("sampler", c["name"].get<std::string>()) << " --seed " << c["seed"].get<int>() << " --H " << size << " --W " << size
          << " --device cpu --outdir " << quoted(outdir.string());
  if (!c["negative"].get<std::string>().empty()) command << " --negative-prompt " << quoted(c["negative"].get<std::string>());
  if (c.contains("rescale")) command << " --guidance-rescale " << c["rescale"].get<double>();
  return command.str();
}

std::string read_bytes(const fs::path& path) { return read_file(path.string()); }

TEST(Sdsample, SameImagesAsDiffusersPipeline) {
  const nlohmann::json all = cases();
  const int size = all["size"].get<int>();
  const fs::path scratch = test::scratch_dir();
  for (const auto& c : all["cases"]) {
    const std::string name = c["name"].get<std::string>();
    SCOPED_TRACE(name);
    const fs::path outdir = scratch / name;
    std::string output;
    ASSERT_EQ(test::run_command(command_for(c, outdir, size), &output), 0) << output;
    for (int i = 0; i < c["n"].get<int>(); ++i) {
      char file[16];
      std::snprintf(file, sizeof(file), "%05d.png", i);
      const Image ours = read_image_file((outdir / "samples" / file).string(), 0);
      const Image reference = read_image_file((fixture() / "reference" / (name + "_" + std::to_string(i) + ".png")).string(), 0);
      ASSERT_EQ(ours.width, size);
      ASSERT_EQ(ours.height, size);
      const double db = psnr(ours, reference);
      EXPECT_GE(db, 40.0) << name << " image " << i;
      std::cout << name << " image " << i << ": PSNR " << db << " dB\n";
    }
    // The grid: one row of n images, make_grid's 2-pixel padding.
    const Image grid = read_image_file((outdir / "grid-0000.png").string(), 0);
    EXPECT_EQ(grid.width, c["n"].get<int>() * (size + 2) + 2);
    EXPECT_EQ(grid.height, size + 4);
  }
}

TEST(Sdsample, PngsCarryTheSettingsAndRunsNeverOverwrite) {
  const fs::path outdir = test::scratch_dir() / "out";
  const std::string prompts = test::write_text(test::scratch_dir().parent_path() / "Sdsample.prompts.txt",
                                               "a man in armor\n\n  a woman in a red dress  \n");
  const std::string base = sdsample_bin() + " --model " + quoted((fixture() / "pipeline").string()) +
                           " --from-file " + quoted(prompts) + " --n-samples 1 --steps 2 --sampler ddim --seed 100" +
                           " --H 32 --W 32 --device cpu --outdir " + quoted(outdir.string());
  std::string output;
  ASSERT_EQ(test::run_command(base, &output), 0) << output;
  ASSERT_EQ(test::run_command(base, &output), 0) << output;
  for (const char* file : {"samples/00000.png", "samples/00001.png", "samples/00002.png", "samples/00003.png",
                           "grid-0000.png", "grid-0001.png"}) {
    EXPECT_TRUE(fs::exists(outdir / file)) << file;
  }
  EXPECT_FALSE(fs::exists(outdir / "samples" / "00004.png"));
  // Prompt k is drawn from seed + k; the text chunks say so.
  const std::string second = read_bytes(outdir / "samples" / "00001.png");
  for (const std::string& chunk : {std::string("tEXtprompt") + '\0' + "a woman in a red dress",
                                  std::string("tEXtseed") + '\0' + "101", std::string("tEXtsampler") + '\0' + "ddim",
                                  std::string("tEXtsteps") + '\0' + "2",
                                  std::string("Steps: 2, Sampler: ddim, CFG scale: 7.5, Seed: 101, Size: 32x32")}) {
    EXPECT_NE(second.find(chunk), std::string::npos) << chunk;
  }
  // The two runs drew the same images (same seeds), stored under new numbers.
  EXPECT_EQ(read_image_file((outdir / "samples" / "00000.png").string(), 0).pixels,
            read_image_file((outdir / "samples" / "00002.png").string(), 0).pixels);
}

// DreamBooth's class images: --n-iter batches per prompt, batch b from seed + b, no grid.
TEST(Sdsample, NIterDrawsBatchesFromSuccessiveSeeds) {
  const fs::path outdir = test::scratch_dir() / "class";
  const std::string base = sdsample_bin() + " --model " + quoted((fixture() / "pipeline").string()) +
                           " --prompt " + quoted("a photo of a dog") + " --n-samples 1 --steps 2 --sampler ddim" +
                           " --H 32 --W 32 --device cpu --no-grid";
  std::string output;
  ASSERT_EQ(test::run_command(base + " --seed 100 --n-iter 3 --outdir " + quoted(outdir.string()), &output), 0)
      << output;
  ASSERT_EQ(test::run_command(base + " --seed 102 --outdir " + quoted((outdir / "single").string()), &output), 0)
      << output;
  EXPECT_TRUE(fs::exists(outdir / "samples" / "00002.png"));
  EXPECT_FALSE(fs::exists(outdir / "samples" / "00003.png"));
  EXPECT_FALSE(fs::exists(outdir / "grid-0000.png"));
  const std::string third = read_bytes(outdir / "samples" / "00002.png");
  EXPECT_NE(third.find(std::string("tEXtseed") + '\0' + "102"), std::string::npos);
  EXPECT_EQ(read_image_file((outdir / "samples" / "00002.png").string(), 0).pixels,
            read_image_file((outdir / "single" / "samples" / "00000.png").string(), 0).pixels);
  EXPECT_NE(read_image_file((outdir / "samples" / "00001.png").string(), 0).pixels,
            read_image_file((outdir / "samples" / "00002.png").string(), 0).pixels);
}

struct BadInput {
  const char* name;
  std::string arguments;
  const char* message;
};

TEST(Sdsample, BadInputExitsTwoAndWritesNothing) {
  const fs::path scratch = test::scratch_dir();
  const std::string model = " --model " + quoted((fixture() / "pipeline").string());
  const std::string empty_file = test::write_text(scratch / "empty.txt", "\n  \n");
  const std::vector<BadInput> cases = {
      {"unknown sampler", model + " --prompt x --sampler heun_karras", "ddim"},
      {"height not a multiple of 8", model + " --prompt x --H 60", "--H 60: must be a positive multiple of 8"},
      {"width not a multiple of 8", model + " --prompt x --W 100", "--W 100: must be a positive multiple of 8"},
      {"empty prompt file", model + " --from-file " + quoted(empty_file), "no prompts"},
      {"missing prompt file", model + " --from-file " + quoted((scratch / "nope.txt").string()), "cannot read"},
      {"no prompt", model, "--prompt or --from-file is required"},
      {"no batches", model + " --prompt x --n-iter 0", "--n-iter must be >= 1"},
      {"unreadable model", " --model " + quoted((scratch / "no-such-model").string()) + " --prompt x", "no-such-model"},
      {"model folder without weights", " --model " + quoted(scratch.string()) + " --prompt x", "model_index.json"},
      {"unknown option", model + " --prompt x --cfg 7", "unrecognised option"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.name);
    const fs::path outdir = scratch / "out";
    std::string output;
    EXPECT_EQ(test::run_command(sdsample_bin() + c.arguments + " --steps 2 --outdir " + quoted(outdir.string()), &output), 2)
        << output;
    EXPECT_NE(output.find(c.message), std::string::npos) << output;
    EXPECT_FALSE(fs::exists(outdir)) << "wrote " << outdir;
  }
  // The unknown sampler message lists the registered ones.
  std::string output;
  test::run_command(sdsample_bin() + model + " --prompt x --sampler heun_karras", &output);
  for (const char* known : {"ddim", "pndm", "euler_ancestral", "dpmpp_2m"}) EXPECT_NE(output.find(known), std::string::npos) << output;
}

}  // namespace
}  // namespace sdtrain
