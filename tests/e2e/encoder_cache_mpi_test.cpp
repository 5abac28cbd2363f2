// `mpirun -np 2 sdtrain` with an on-disk encoder cache (stable_diffusion cache.dir): both ranks
// write into one folder at once (the text embeddings of the shared captions are the same entries
// on both ranks), and a later one-rank run finds every latent and embedding either rank stored.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>

#include "tests/common/test_env.h"

namespace sdtrain {
namespace {
namespace fs = std::filesystem;

std::string read_text(const fs::path& path) {
  std::ifstream in(path);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}


int run(const fs::path& dir, const std::string& name, int ranks, int batch) {
  const std::string config = test::write_text(
      dir / (name + ".pbtxt"),
      "run { output_dir: \"" + name + "\" seed: 5 max_epochs: 1 val_every_n_epochs: 0 checkpoint_every_n_steps: 0 }\n"
      "model { type: \"stable_diffusion\" options { [type.googleapis.com/sdtrain.StableDiffusionOptions] {\n"
      "  unet { sample_size: 4 in_channels: 4 out_channels: 4 block_out_channels: [32, 64] layers_per_block: 1\n"
      "         cross_attention_dim: 32 attention_head_dim: 8 norm_num_groups: 32\n"
      "         down_block_types: [\"CrossAttnDownBlock2D\", \"DownBlock2D\"]\n"
      "         up_block_types: [\"UpBlock2D\", \"CrossAttnUpBlock2D\"] }\n"
      "  vae { block_out_channels: [32, 32, 32, 32] layers_per_block: 1 sample_size: 32 }\n"
      "  text_encoder { hidden_size: 32 intermediate_size: 37 num_hidden_layers: 2 num_attention_heads: 4 }\n"
      "  cache { latents: true text_embeddings: true dir: \"cache\" } } } }\n"
      "data { train { type: \"image_folder\" options { [type.googleapis.com/sdtrain.ImageFolderOptions] {"
      " root: \"data\" } } } batch_size: " + std::to_string(batch) +
      " num_workers: 1 transforms { resolution: 32 random_flip: false } }\n"
      "lr_schedule { type: \"constant\" }\n");
  std::string output;
  const int code = test::run_command(test::mpirun(ranks) + " " + (test::binary_dir() / "bin" / "sdtrain").string() +
                                         " --config " + config, &output);
  EXPECT_EQ(code, 0) << output;
  return code;
}

TEST(EncoderCacheMpi, RanksShareOneCacheFolder) {
  const fs::path dir = test::scratch_dir();
  test::write_captioned_image_folder(dir / "data", 8, {"a red square", "a blue square"});
  ASSERT_EQ(run(dir, "two_ranks", 2, 2), 0);
  for (const char* rank : {"rank-00000.log", "rank-00001.log"}) {
    const std::string log = read_text(dir / "two_ranks" / "logs" / rank);
    EXPECT_NE(log.find("cache, epoch 0 (this rank): latents 0 hits, 4 misses"), std::string::npos) << rank << log;
    EXPECT_EQ(log.find("ignoring an unusable entry"), std::string::npos) << rank << log;
  }
  // One complete file per entry, no temporary left behind: 8 latents, 2 captions.
  int latents = 0, texts = 0, others = 0;
  for (const auto& entry : fs::recursive_directory_iterator(dir / "cache")) {
    if (!entry.is_regular_file()) continue;
    const std::string path = entry.path().string();
    if (entry.path().extension() != ".safetensors") {
      ++others;
    } else if (path.find("/latents/") != std::string::npos) {
      ++latents;
    } else if (path.find("/text_embeddings/") != std::string::npos) {
      ++texts;
    }
  }
  EXPECT_EQ(latents, 8);
  EXPECT_EQ(texts, 2);
  EXPECT_EQ(others, 0);

  // One rank now sees all 8 images: those rank 1 stored as well as its own.
  ASSERT_EQ(run(dir, "one_rank", 1, 4), 0);
  const std::string log = read_text(dir / "one_rank" / "logs" / "rank-00000.log");
  EXPECT_NE(log.find("cache, epoch 0 (this rank): latents 8 hits, 0 misses (encoded and stored); "
                     "text embeddings 8 hits, 0 misses"),
            std::string::npos)
      << log;
}

}  // namespace
}  // namespace sdtrain
