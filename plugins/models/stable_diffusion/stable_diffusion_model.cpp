#include "plugins/models/stable_diffusion/stable_diffusion_model.h"

#include <filesystem>

#include "framework/config/config_loader.h"
#include "framework/log/logger.h"
#include "framework/util/errors.h"
#include "plugins/models/stable_diffusion/modules/state_dict_loader.h"
#include "plugins/models/stable_diffusion/sd_export.h"
#include "plugins/models/stable_diffusion/weights/sd_weights.h"
#include "plugins/models/stable_diffusion/weights/sd_weights_io.h"
#include "plugins/schedulers/noise/training_losses.h"
#include "proto/schedulers.pb.h"

namespace sdtrain {
namespace {

PluginSpec default_noise_scheduler() {
  PluginSpec spec;
  spec.set_type("ddpm");
  return spec;
}

/// A CPU generator per sample (see training_loss for the draw order).
std::vector<at::Generator> sample_generators(const Batch& batch) {
  std::vector<at::Generator> generators;
  for (uint64_t seed : batch.seeds) generators.push_back(at::detail::createCPUGenerator(seed));
  return generators;
}

/// Copies `tensors` into `module` by name. Non-strict (main.py's --finetune_from): what matches
/// is loaded and every missing, unexpected or mis-shaped key is logged by name.
void load_component(torch::nn::Module& module, NamedTensors& tensors, const std::string& component,
                    const std::string& source, bool strict) {
  const TensorMap expected = module_state_dict(module);
  const WeightIssues issues = match_state_dict(tensors, expected, component + ".");
  if (!issues.empty()) {
    if (strict) throw FormatError(source + ": " + component + " does not match the model:\n" + issues.describe());
    SDTRAIN_LOG(WARNING) << source << ": " << component << " loaded non-strictly:\n" << issues.describe();
  }
  torch::NoGradGuard no_grad;
  for (const auto& [name, target] : expected) {
    const auto found = tensors.find(name);
    if (found != tensors.end() && found->second.sizes() == target.sizes()) {
      torch::Tensor destination = target;
      destination.copy_(found->second);
    }
  }
}

}  // namespace

void StableDiffusionModel::load_weights(const std::string& path) {
  if (!std::filesystem::exists(path)) throw ConfigError("weights: not found: " + path);
  SdLoadOptions load;
  load.strict = options_.strict_weights();
  SdWeights weights = load_sd_weights(path, load);
  load_component(*networks_.unet, weights.unet, "unet", path, options_.strict_weights());
  load_component(*networks_.text_encoder, weights.text_encoder, "text_encoder", path, options_.strict_weights());
  if (networks_.vae) load_component(*networks_.vae, weights.vae, "vae", path, options_.strict_weights());
  if (options_.ema_from_weights() && !weights.unet_ema.empty()) ema_start_ = std::move(weights.unet_ema);
  source_configs_ = weights.configs;
  source_tokenizer_dir_ = weights.tokenizer_dir;
  SDTRAIN_LOG(INFO) << "weights loaded from " << path << (ema_start_.empty() ? "" : " (with its EMA UNet)");
}

StableDiffusionModel::StableDiffusionModel(const StableDiffusionOptions& options, const PluginContext& context)
    : options_(options), context_(context) {
  const bool pixels = options.first_stage() == StableDiffusionOptions::PIXELS;
  if (pixels && (options.unet().in_channels() != 3 || options.unet().out_channels() != 3)) {
    throw ConfigError("unet: first_stage PIXELS needs in_channels: 3 and out_channels: 3");
  }
  if (options.min_snr_gamma() < 0) throw ConfigError("min_snr_gamma: must be >= 0 (0 = off)");
  networks_.tokenizer = &tokenizer_;
  networks_.unet = UNet2DConditionModel(options.unet());
  networks_.text_encoder = ClipTextModel(options.text_encoder());
  if (!pixels) {
    networks_.vae = AutoencoderKL(options.vae());
    networks_.scaling_factor = networks_.vae->scaling_factor();
  }
  if (options.text_encoder().hidden_size() != options.unet().cross_attention_dim()) {
    throw ConfigError("unet.cross_attention_dim: " + std::to_string(options.unet().cross_attention_dim()) +
                      " must equal text_encoder.hidden_size " + std::to_string(options.text_encoder().hidden_size()));
  }
  if (!options.weights().empty()) load_weights(resolve_config_path(context.base_dir, options.weights()));
  noise_scheduler_ = Registry<NoiseScheduler>::instance().create(
      options.has_noise_scheduler() ? options.noise_scheduler() : default_noise_scheduler(), context,
      "noise_scheduler");

  // Frozen parts: no gradients, inference mode for norms.
  for (auto& parameter : networks_.text_encoder->parameters()) parameter.set_requires_grad(false);
  networks_.text_encoder->eval();
  if (networks_.vae) {
    for (auto& parameter : networks_.vae->parameters()) parameter.set_requires_grad(false);
    networks_.vae->eval();
  }
}

void StableDiffusionModel::to(const torch::Device& device) {
  device_ = device;
  networks_.unet->to(device);
  networks_.text_encoder->to(device);
  if (networks_.vae) networks_.vae->to(device);
}

torch::Tensor StableDiffusionModel::encode_first_stage(const torch::Tensor& pixels,
                                                       const std::vector<torch::Tensor>& posterior_noise) {
  torch::NoGradGuard no_grad;
  if (!networks_.vae) return pixels;
  DiagonalGaussian posterior = networks_.vae->encode(pixels);
  return posterior.sample_with_noise(torch::stack(posterior_noise).to(pixels.device())) * networks_.scaling_factor;
}

torch::Tensor StableDiffusionModel::training_loss(const Batch& batch) {
  TORCH_CHECK(batch.pixels.defined() && batch.seeds.size() == static_cast<std::size_t>(batch.pixels.size(0)),
              "stable_diffusion: a training batch needs pixels and one seed per sample");
  const torch::Tensor pixels = batch.pixels.to(device_);
  const int64_t size = pixels.size(0);
  std::vector<at::Generator> generators = sample_generators(batch);

  const int64_t latent_channels = networks_.vae ? networks_.vae->config().latent_channels() : 3;
  const int64_t factor = networks_.vae ? networks_.vae->downsample_factor() : 1;
  const std::vector<int64_t> latent_shape{latent_channels, pixels.size(2) / factor, pixels.size(3) / factor};

  std::vector<torch::Tensor> posterior_noise;
  if (networks_.vae) {
    for (auto& generator : generators) posterior_noise.push_back(torch::randn(latent_shape, generator, torch::kFloat32));
  }
  const torch::Tensor latents = encode_first_stage(pixels, posterior_noise);

  std::vector<torch::Tensor> noise;
  std::vector<int64_t> timesteps;
  const int64_t num_timesteps = noise_scheduler_->num_train_timesteps();
  for (auto& generator : generators) {
    torch::Tensor sample_noise = torch::randn(latent_shape, generator, torch::kFloat32);
    if (options_.noise_offset() != 0) {
      sample_noise = sample_noise + options_.noise_offset() * torch::randn({latent_shape[0], 1, 1}, generator, torch::kFloat32);
    }
    noise.push_back(sample_noise);
    timesteps.push_back(torch::randint(0, num_timesteps, {1}, generator, torch::kInt64).item<int64_t>());
  }
  const torch::Tensor noise_batch = torch::stack(noise).to(device_);
  const torch::Tensor t = torch::tensor(timesteps, torch::kInt64).to(device_);

  torch::Tensor context;
  {
    torch::NoGradGuard no_grad;
    context = encode_prompts(networks_, batch.captions, device_);
  }
  const torch::Tensor noisy = noise_scheduler_->add_noise(latents, noise_batch, t);
  const torch::Tensor prediction = networks_.unet->forward(noisy, t, context);
  const torch::Tensor target = noise::training_target(*noise_scheduler_, latents, noise_batch, t);
  torch::Tensor per_sample = (prediction.to(torch::kFloat32) - target.to(torch::kFloat32)).pow(2).reshape({size, -1}).mean(1);
  if (options_.min_snr_gamma() > 0) {
    const torch::Tensor snr = noise::compute_snr(noise_scheduler_->alphas_cumprod(), t.to(torch::kCPU));
    per_sample = per_sample * noise::min_snr_loss_weights(snr, options_.min_snr_gamma(), noise_scheduler_->prediction_type())
                                  .to(per_sample.device());
  }
  return per_sample.mean();
}

std::vector<Image> StableDiffusionModel::sample(const SampleRequest& request) {
  PluginSpec spec;
  spec.set_type(request.sampler);
  if (request.sampler == "ddim") {
    DdimSchedulerOptions ddim;
    ddim.set_eta(request.eta);
    spec.mutable_options()->PackFrom(ddim);
  }
  std::unique_ptr<NoiseScheduler> sampler = Registry<NoiseScheduler>::instance().create(spec, context_, "sampler");
  const bool was_training = networks_.unet->is_training();
  networks_.unet->eval();
  std::vector<Image> images = txt2img(networks_, *sampler, request, device_);
  if (was_training) networks_.unet->train();
  return images;
}

std::string StableDiffusionModel::export_unavailable_reason() const {
  if (!networks_.vae) {
    return "stable_diffusion with first_stage: PIXELS has no autoencoder, so there is no diffusers pipeline to "
           "export";
  }
  return "";
}

void StableDiffusionModel::export_pretrained(const std::string& folder) {
  const std::string reason = export_unavailable_reason();
  if (!reason.empty()) throw ConfigError("final_export: " + reason);
  const SdWeights weights = weights_for_export(networks_, options_, source_configs_, source_tokenizer_dir_);
  save_sd_weights(weights, folder, SdFormat::kDiffusers);
}

SDTRAIN_REGISTER_MODEL("stable_diffusion", StableDiffusionOptions,
                       "Stable Diffusion v1: UNet fine-tuned, autoencoder and CLIP text encoder frozen",
                       [](const StableDiffusionOptions& options, const PluginContext& context) {
                         return std::make_unique<StableDiffusionModel>(options, context);
                       });

}  // namespace sdtrain
