// SDXL's conditioning in training, on a tiny SDXL-shaped model (tiny_sd_model.h's make_sdxl):
// the size micro-conditioning is diffusers' compute_time_ids of each sample's original size and
// crop, the batch loss and gradients are the mean of its halves' (so B x 2 ranks = 2B x 1), the
// text cache holds both encoders' outputs and gives the uncached step, a dropped caption
// conditions on zeros, train_text_encoder and LoRA adapters reach both text encoders (the
// adapters export under kohya's SDXL names), and options that do not fit together are refused
// naming the fields.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <string>

#include "framework/data/data_loader.h"
#include "framework/data/transforms.h"
#include "plugins/datasets/datasets.pb.h"
#include "plugins/models/stable_diffusion/sd_size_conditioning.h"
#include "plugins/models/stable_diffusion/weights/sd_lora_format.h"
#include "sdtrain/errors.h"
#include "tests/common/test_env.h"
#include "tests/common/test_images.h"
#include "tests/data/dataset_support.h"
#include "tests/train/tiny_sd_model.h"

namespace sdtrain {
namespace {
namespace fs = std::filesystem;

std::unique_ptr<StableDiffusionModel> tiny_sdxl(const std::string& extra = "", uint64_t seed = 3) {
  return testing::make_tiny_model(extra, seed, ".", torch::kFloat32, /*sdxl=*/true);
}

/// `count` images of alternating sizes (wide and tall, so crops have a choice of window) with two
/// captions.
std::shared_ptr<const Dataset> image_folder(const fs::path& dir, int count) {
  fs::create_directories(dir);
  std::ofstream csv(dir / "metadata.csv");
  csv << "file_name,text\n";
  for (int i = 0; i < count; ++i) {
    const std::string name = "img" + std::to_string(i) + ".png";
    testing::write_test_png((dir / name).string(), i % 2 == 0 ? 40 : 24, i % 2 == 0 ? 24 : 44, i);
    csv << name << "," << (i % 3 == 0 ? "a red square" : "a blue square") << "\n";
  }
  csv.close();
  ImageFolderOptions options;
  options.set_root(dir.string());
  return std::shared_ptr<const Dataset>(testing::make_dataset("image_folder", options).release());
}

DataLoaderOptions loader_options(int batch_size, const StableDiffusionModel* cached_model = nullptr) {
  DataLoaderOptions options;
  options.batch_size = batch_size;
  options.num_workers = 1;
  options.seed = 5;
  options.transforms.set_resolution(32);
  options.transforms.set_random_flip(true);
  options.transforms.set_crop(TransformConfig::RANDOM);
  options.caption_dropout = 0.3f;
  if (cached_model) options.pixel_cache = cached_model->pixel_cache();
  return options;
}

/// The first batch of epoch 0 (two samples, no caption dropped).
Batch first_batch(const std::shared_ptr<const Dataset>& dataset) {
  DataLoaderOptions options = loader_options(2);
  options.caption_dropout = 0;
  DataLoader loader(dataset, options);
  loader.seek(0, 0);
  return *loader.next();
}

/// The rows [begin, end) of a training batch (pixels, captions, seeds, origins).
Batch rows_of(const Batch& batch, int64_t begin, int64_t end) {
  Batch part;
  part.pixels = batch.pixels.narrow(0, begin, end - begin);
  part.captions.assign(batch.captions.begin() + begin, batch.captions.begin() + end);
  part.keys.assign(batch.keys.begin() + begin, batch.keys.begin() + end);
  part.seeds.assign(batch.seeds.begin() + begin, batch.seeds.begin() + end);
  part.origins.assign(batch.origins.begin() + begin, batch.origins.begin() + end);
  return part;
}

torch::Tensor flat_gradient(torch::nn::Module& module) {
  std::vector<torch::Tensor> parts;
  for (const auto& p : module.parameters()) parts.push_back(p.grad().flatten().clone());
  return torch::cat(parts);
}

TEST(SdxlSizeConditioning, RowsAreDiffusersComputeTimeIdsOfEachSample) {
  // diffusers' train_text_to_image_sdxl.py: add_time_ids = original_size + crop_top_left +
  // target_size, as (height, width) pairs.
  PixelsOrigin first;
  first.original_width = 300;
  first.original_height = 200;
  first.crop_left = 5;
  PixelsOrigin second = first;
  second.crop_top = 7;
  second.crop_left = 0;
  const torch::Tensor ids = training_size_time_ids({first, second}, 2, 32, 48);
  EXPECT_TRUE(torch::equal(ids, torch::tensor({200.f, 300.f, 0.f, 5.f, 32.f, 48.f,  //
                                               200.f, 300.f, 7.f, 0.f, 32.f, 48.f})
                                    .view({2, 6})));
  // Without origins (validation-loss batches): uncropped images of the target size, as sampling.
  EXPECT_TRUE(torch::equal(training_size_time_ids({}, 1, 24, 40), size_time_ids(1, 24, 40, 0, 0, 24, 40)));
  EXPECT_THROW(training_size_time_ids({first}, 2, 32, 32), std::invalid_argument);
}

// The loader's crop as diffusers' script measures it: that script flips the resized image and
// then crops, so a flipped sample's crop is at the mirrored offset of the loader's (which crops,
// then flips: the same pixels). Centre crops make the offsets known: torchvision's
// int(round((resized - 32) / 2)), mirrored for flipped samples.
TEST(SdxlSizeConditioning, TheLoadersCropIsWhereDiffusersWouldMeasureIt) {
  const auto dataset = image_folder(test::scratch_dir() / "data", 6);
  DataLoaderOptions options = loader_options(2);
  options.transforms.set_crop(TransformConfig::CENTER);
  DataLoader loader(dataset, options);
  int flipped = 0, unflipped = 0;
  for (int64_t epoch = 0; epoch < 2; ++epoch) {
    loader.seek(epoch, 0);
    while (auto batch = loader.next()) {
      for (std::size_t j = 0; j < batch->origins.size(); ++j) {
        const PixelsOrigin& o = batch->origins[j];
        const int index = std::stoi(batch->keys[j].substr(3));
        const int width = index % 2 == 0 ? 40 : 24, height = index % 2 == 0 ? 24 : 44;
        EXPECT_EQ(o.original_width, width);
        EXPECT_EQ(o.original_height, height);
        const auto [resized_width, resized_height] = resized_size_for_short_side(width, height, 32);
        const int centre_left = static_cast<int>(std::nearbyint((resized_width - 32) / 2.0));
        const int centre_top = static_cast<int>(std::nearbyint((resized_height - 32) / 2.0));
        EXPECT_EQ(o.crop_top, centre_top) << batch->keys[j];
        EXPECT_EQ(o.crop_left, o.flip ? resized_width - centre_left - 32 : centre_left) << batch->keys[j];
        (o.flip ? flipped : unflipped) += 1;
      }
    }
  }
  EXPECT_GT(flipped, 0);
  EXPECT_GT(unflipped, 0);
}

TEST(SdxlTraining, TheBatchLossAndGradientsAreTheMeanOfItsHalves) {
  const auto dataset = image_folder(test::scratch_dir() / "data", 4);
  auto model = tiny_sdxl();
  DataLoader loader(dataset, loader_options(4));
  loader.seek(1, 0);
  const auto batch = loader.next();
  ASSERT_TRUE(batch.has_value());
  torch::nn::Module& unet = model->trainable_module();
  unet.zero_grad();
  const torch::Tensor whole = model->training_loss(*batch);
  whole.backward();
  const torch::Tensor whole_gradient = flat_gradient(unet);
  unet.zero_grad();
  const torch::Tensor first = model->training_loss(rows_of(*batch, 0, 2));
  const torch::Tensor second = model->training_loss(rows_of(*batch, 2, 4));
  ((first + second) / 2).backward();
  const torch::Tensor halves_gradient = flat_gradient(unet);
  EXPECT_TRUE(std::isfinite(whole.item<double>()));
  EXPECT_NEAR(whole.item<double>(), ((first + second) / 2).item<double>(), 1e-5 * whole.item<double>());
  const double scale = whole_gradient.abs().max().item<double>();
  EXPECT_GT(scale, 0);
  EXPECT_LE((whole_gradient - halves_gradient).abs().max().item<double>(), 1e-4 * scale);
  // The text_time embedding learns from the conditioning: its gradient is not zero.
  double add_embedding = 0;
  for (const auto& item : unet.named_parameters()) {
    if (item.key().rfind("add_embedding.", 0) == 0) add_embedding += item.value().grad().abs().sum().item<double>();
  }
  EXPECT_GT(add_embedding, 0);
}

TEST(SdxlTraining, CachedConditioningGivesTheUncachedStep) {
  const auto dataset = image_folder(test::scratch_dir() / "data", 4);
  auto plain = tiny_sdxl();
  auto cached = tiny_sdxl("cache { text_embeddings: true }");
  DataLoader plain_loader(dataset, loader_options(2));
  DataLoader cached_loader(dataset, loader_options(2, cached.get()));
  for (int64_t epoch = 0; epoch < 3; ++epoch) {
    plain_loader.seek(epoch, 0);
    cached_loader.seek(epoch, 0);
    while (auto a = plain_loader.next()) {
      auto b = cached_loader.next();
      ASSERT_TRUE(b.has_value());
      ASSERT_EQ(a->captions, b->captions);
      const double loss_a = plain->training_loss(*a).item<double>();
      const double loss_b = cached->training_loss(*b).item<double>();
      EXPECT_NEAR(loss_a, loss_b, 1e-6 * std::abs(loss_a)) << "epoch " << epoch;
    }
  }
  EXPECT_GT(cached->cache_counts().text_hits, 0);
  EXPECT_LE(cached->cache_counts().text_misses, 3);  // two captions and the dropped one
}

TEST(SdxlTraining, ADroppedCaptionConditionsOnZeros) {
  const auto dataset = image_folder(test::scratch_dir() / "data", 2);
  auto model = tiny_sdxl();
  auto other_encoders = tiny_sdxl();
  {
    // The same UNet and autoencoder, other text encoders.
    torch::NoGradGuard no_grad;
    for (auto* encoder : {&other_encoders->networks().text_encoder, &other_encoders->networks().text_encoder_2}) {
      for (auto& p : (*encoder)->parameters()) p.add_(0.5);
    }
  }
  Batch batch = first_batch(dataset);
  torch::NoGradGuard no_grad;
  EXPECT_NE(model->training_loss(batch).item<double>(), other_encoders->training_loss(batch).item<double>());
  batch.captions.assign(batch.captions.size(), "");
  EXPECT_EQ(model->training_loss(batch).item<double>(), other_encoders->training_loss(batch).item<double>())
      << "an empty caption's conditioning does not depend on the text encoders";
}

TEST(SdxlTraining, LoraTrainsAdaptersOnBothTextEncodersAndExportsKohyasSdxlNames) {
  const auto dataset = image_folder(test::scratch_dir() / "data", 2);
  auto model = tiny_sdxl("adapter { lora { rank: 2 alpha: 1 text_encoder: true text_encoder_lr_factor: 0.5 } }");
  const auto groups = model->parameter_groups();
  ASSERT_EQ(groups.size(), 2u);
  EXPECT_EQ(groups[1].name, "lora_te");
  EXPECT_EQ(groups[1].lr_factor, 0.5);
  std::map<std::string, int> adapters;  // by kohya prefix
  for (const auto& item : model->trainable_module().named_parameters()) {
    for (const char* prefix : {"lora_unet_input_blocks_", "lora_te1_", "lora_te2_", "lora_te_", "lora_unet_down_"}) {
      if (item.key().rfind(prefix, 0) == 0) adapters[prefix] += 1;
    }
    EXPECT_EQ(item.key().rfind(groups[0].prefix, 0) == 0 || item.key().rfind(groups[1].prefix, 0) == 0, true)
        << item.key() << " is in no parameter group";
  }
  EXPECT_GT(adapters["lora_unet_input_blocks_"], 0);
  EXPECT_GT(adapters["lora_te1_"], 0);
  EXPECT_GT(adapters["lora_te2_"], 0);
  EXPECT_EQ(adapters.count("lora_te_") + adapters.count("lora_unet_down_"), 0u);

  // Both encoders' adapters learn: their up weights (which start at zero) get gradients.
  model->training_loss(first_batch(dataset)).backward();
  double te1 = 0, te2 = 0;
  for (const auto& item : model->trainable_module().named_parameters()) {
    if (item.key().find(".lora_up.") == std::string::npos || !item.value().grad().defined()) continue;
    const double size = item.value().grad().abs().sum().item<double>();
    if (item.key().rfind("lora_te1_", 0) == 0) te1 += size;
    if (item.key().rfind("lora_te2_", 0) == 0) te2 += size;
  }
  EXPECT_GT(te1, 0);
  EXPECT_GT(te2, 0);

  // The export is kohya's SDXL file (and PEFT's), read back against the model's targets.
  const fs::path folder = test::scratch_dir() / "export";
  model->export_pretrained(folder.string());
  const LoraFile kohya = read_lora_file((folder / "export.safetensors").string(), lora_targets(model->networks()));
  EXPECT_EQ(kohya.metadata.at("ss_base_model_version"), "sdxl_base_v1-0");
  EXPECT_TRUE(kohya.tensors.count("lora_te2_text_model_encoder_layers_1_self_attn_q_proj.lora_up.weight"));
  const LoraFile peft =
      read_lora_file((folder / "pytorch_lora_weights.safetensors").string(), lora_targets(model->networks()));
  EXPECT_EQ(peft.tensors.size(), kohya.tensors.size());
}

TEST(SdxlTraining, TrainTextEncoderTrainsBothEncoders) {
  const auto dataset = image_folder(test::scratch_dir() / "data", 2);
  auto model = tiny_sdxl("train_text_encoder: true text_encoder_lr_factor: 0.25");
  const auto groups = model->parameter_groups();
  ASSERT_EQ(groups.size(), 3u);
  EXPECT_EQ(groups[2].name, "text_encoder_2");
  EXPECT_EQ(groups[2].prefix, "text_encoder_2.");
  EXPECT_EQ(groups[2].lr_factor, 0.25);
  model->training_loss(first_batch(dataset)).backward();
  std::map<std::string, double> gradient;  // by group
  std::size_t parameters = 0;
  for (const auto& item : model->trainable_module().named_parameters()) {
    ++parameters;
    if (!item.value().grad().defined()) continue;
    const std::string group = item.key().substr(0, item.key().find('.'));
    gradient[group] += item.value().grad().abs().sum().item<double>();
  }
  EXPECT_GT(gradient["unet"], 0);
  EXPECT_GT(gradient["text_encoder"], 0);
  EXPECT_GT(gradient["text_encoder_2"], 0);
  const auto& networks = model->networks();
  EXPECT_EQ(parameters, networks.unet->parameters().size() + networks.text_encoder->parameters().size() +
                            networks.text_encoder_2->parameters().size());
}

/// The message of the ConfigError building the tiny SDXL model with `change` throws ("" if none).
std::string refusal(const std::function<void(StableDiffusionOptions&)>& change) {
  anchor_builtin_plugins();
  StableDiffusionOptions options = testing::tiny_options("");
  testing::make_sdxl(options);
  change(options);
  try {
    StableDiffusionModel model(options, PluginContext{});
  } catch (const ConfigError& error) {
    return error.what();
  }
  return "";
}

TEST(SdxlTraining, OptionsThatDoNotFitAreRefusedNamingTheFields) {
  EXPECT_NE(refusal([](StableDiffusionOptions& o) { o.mutable_unet()->set_cross_attention_dim(32); })
                .find("unet.cross_attention_dim: 32 must equal text_encoder.hidden_size 32 + text_encoder_2.hidden_size "
                      "48 = 80"),
            std::string::npos);
  EXPECT_NE(refusal([](StableDiffusionOptions& o) { o.mutable_text_encoder_2()->set_projection_dim(20); })
                .find("unet.projection_class_embeddings_input_dim: 64 must equal text_encoder_2.projection_dim 20 + 6 x "
                      "unet.addition_time_embed_dim 8 = 68"),
            std::string::npos);
  EXPECT_NE(refusal([](StableDiffusionOptions& o) { o.mutable_unet()->clear_addition_embed_type(); })
                .find("unet.addition_embed_type: must be \"text_time\" with text_encoder_2 (SDXL); it is \"\""),
            std::string::npos);
  EXPECT_NE(refusal([](StableDiffusionOptions& o) {
              o.set_train_text_encoder(true);
              o.mutable_cache()->set_text_embeddings(true);
            }).find("cache.text_embeddings: cannot be on with train_text_encoder"),
            std::string::npos);
  EXPECT_NE(refusal([](StableDiffusionOptions& o) {
              o.mutable_adapter()->mutable_lora()->set_text_encoder(true);
              o.mutable_cache()->set_text_embeddings(true);
            }).find("cache.text_embeddings: cannot be on with adapter.lora.text_encoder"),
            std::string::npos);
  EXPECT_NE(refusal([](StableDiffusionOptions& o) { o.clear_text_encoder_2(); }).find("needs text_encoder_2"),
            std::string::npos);
  EXPECT_EQ(refusal([](StableDiffusionOptions&) {}), "");
}

}  // namespace
}  // namespace sdtrain
