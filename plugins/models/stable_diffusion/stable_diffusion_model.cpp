#include "plugins/models/stable_diffusion/stable_diffusion_model.h"

#include <filesystem>
#include <mutex>
#include <unordered_map>

#include "framework/config/config_loader.h"
#include "framework/util/strings.h"
#include "plugins/models/stable_diffusion/modules/module_cast.h"
#include "plugins/models/stable_diffusion/modules/state_dict_loader.h"
#include "plugins/models/stable_diffusion/sd_adapter_export.h"
#include "plugins/models/stable_diffusion/sd_conditioning_fit.h"
#include "plugins/models/stable_diffusion/sd_export.h"
#include "plugins/models/stable_diffusion/sd_size_conditioning.h"
#include "plugins/models/stable_diffusion/weights/sd_component_configs.h"
#include "plugins/models/stable_diffusion/weights/sd_tokenizer_files.h"
#include "plugins/models/stable_diffusion/weights/sd_weights.h"
#include "plugins/models/stable_diffusion/weights/sd_weights_io.h"
#include "plugins/schedulers/noise/schedulers.pb.h"
#include "plugins/schedulers/noise/training_losses.h"
#include "sdtrain/errors.h"
#include "sdtrain/log.h"

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

/// Stacks `rows` (each on the CPU or already on `device`) into one tensor on `device`. The CPU rows
/// travel in one copy, non-blocking from pinned memory on a GPU: a copy per row from pageable
/// memory would make the host wait for the GPU each time.
torch::Tensor stack_on_device(const std::vector<torch::Tensor>& rows, const torch::Device& device) {
  if (device.is_cpu()) return torch::stack(rows);
  std::vector<torch::Tensor> host_rows;
  for (const torch::Tensor& row : rows) {
    if (row.is_cpu()) host_rows.push_back(row);
  }
  if (host_rows.empty()) return torch::stack(rows);
  const torch::Tensor moved = torch::stack(host_rows).pin_memory().to(device, /*non_blocking=*/true);
  if (host_rows.size() == rows.size()) return moved;
  std::vector<torch::Tensor> placed;
  int64_t next = 0;
  for (const torch::Tensor& row : rows) placed.push_back(row.is_cpu() ? moved[next++] : row);
  return torch::stack(placed);
}

/// The UNet and the text encoder(s) as one module, for training them together: parameters named
/// "unet.*", "text_encoder.*" and, for SDXL, "text_encoder_2.*".
struct UNetAndTextEncoder : torch::nn::Module {
  UNetAndTextEncoder(const UNet2DConditionModel& unet, const ClipTextModel& text_encoder,
                     const ClipTextModel& text_encoder_2) {
    register_module("unet", unet.ptr());
    register_module("text_encoder", text_encoder.ptr());
    if (text_encoder_2) register_module("text_encoder_2", text_encoder_2.ptr());
  }
};

}  // namespace

void StableDiffusionModel::load_weights(const std::string& path) {
  if (!std::filesystem::exists(path)) throw ConfigError("weights: not found: " + path);
  SdLoadOptions load;
  load.strict = options_.strict_weights();
  SdWeights weights = load_sd_weights(path, load);
  if (weights.is_sdxl() && !networks_.text_encoder_2) {
    // Whatever the strictness: half of an SDXL model in an SD v1/2.x-shaped one is no model.
    const WeightIssues unet_issues = match_state_dict(weights.unet, module_state_dict(*networks_.unet), "unet.");
    throw FormatError(path + ": an SDXL model (a second text encoder, text_encoder_2: " +
                      std::to_string(weights.text_encoder_2.size()) +
                      " tensors, and the UNet's add_embedding), but the model is configured with one text encoder "
                      "(set text_encoder_2 for SDXL); what the configured UNet does not match:\n" + unet_issues.describe());
  }
  if (!weights.is_sdxl() && networks_.text_encoder_2) {
    throw FormatError(path + ": holds one text encoder, but the model is configured with text_encoder_2 (SDXL)");
  }
  load_component(*networks_.unet, weights.unet, "unet", path, options_.strict_weights());
  load_component(*networks_.text_encoder, weights.text_encoder, "text_encoder", path, options_.strict_weights());
  if (networks_.text_encoder_2) {
    load_component(*networks_.text_encoder_2, weights.text_encoder_2, "text_encoder_2", path, options_.strict_weights());
  }
  if (networks_.vae) load_component(*networks_.vae, weights.vae, "vae", path, options_.strict_weights());
  if (options_.ema_from_weights() && !weights.unet_ema.empty()) {
    ema_start_ = std::move(weights.unet_ema);
    const auto updates = weights.extras.find("model_ema.num_updates");
    ema_start_updates_ = updates != weights.extras.end() ? updates->second.item<int64_t>() : 0;
  }
  source_configs_ = weights.configs;
  source_tokenizer_dir_ = weights.tokenizer_dir;
  source_tokenizer_2_dir_ = weights.tokenizer_2_dir;
  // The folder's tokenizer: its pad token is part of the model (SD 2.x pads with "!", v1 with EOS).
  tokenizer_ = weights_tokenizer(weights);
  if (networks_.text_encoder_2) tokenizer_2_ = weights_tokenizer_2(weights);
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
  if (options.has_text_encoder_2()) {
    tokenizer_2_ = ClipTokenizer().with_pad_token("!");  // OpenCLIP's, unless the weights bring their own
    networks_.tokenizer_2 = &tokenizer_2_;
    networks_.text_encoder_2 = ClipTextModel(options.text_encoder_2());
    networks_.zero_empty_negative_prompt = true;  // SDXL's pipelines: force_zeros_for_empty_prompt
  }
  if (!pixels) {
    networks_.vae = AutoencoderKL(options.vae());
    networks_.scaling_factor = networks_.vae->scaling_factor();
  }
  if (const auto misfit = conditioning_misfit(options.unet(), options.text_encoder(),
                                              options.has_text_encoder_2() ? &options.text_encoder_2() : nullptr)) {
    throw ConfigError(misfit->text());
  }
  if (!options.weights().empty()) load_weights(resolve_config_path(context.base_dir, options.weights()));
  noise_scheduler_ = Registry<NoiseScheduler>::instance().create(
      options.has_noise_scheduler() ? options.noise_scheduler() : default_noise_scheduler(), context,
      "noise_scheduler");
  alphas_cumprod_ = noise_scheduler_->alphas_cumprod();
  // At zero terminal SNR (schedule.rescale_betas_zero_snr) the epsilon weight min(SNR, gamma) / SNR
  // is 0 / 0 at the last timestep: every step drawing it would have a NaN loss and be skipped.
  if (options.min_snr_gamma() > 0 && noise_scheduler_->prediction_type() == "epsilon" &&
      noise_scheduler_->alphas_cumprod()[-1].item<double>() == 0.0) {
    throw ConfigError("min_snr_gamma: the noise_scheduler has zero terminal SNR (rescale_betas_zero_snr) and epsilon "
                      "prediction, whose min-SNR weight is 0/0 at the last timestep; use prediction_type: "
                      "V_PREDICTION");
  }

  // Frozen parts: no gradients, inference mode for norms.
  if (!options.train_text_encoder()) {
    for (auto& parameter : networks_.text_encoder->parameters()) parameter.set_requires_grad(false);
    networks_.text_encoder->eval();
  }
  if (networks_.text_encoder_2 && !options.train_text_encoder()) {
    for (auto& parameter : networks_.text_encoder_2->parameters()) parameter.set_requires_grad(false);
    networks_.text_encoder_2->eval();
  }
  if (networks_.vae) {
    for (auto& parameter : networks_.vae->parameters()) parameter.set_requires_grad(false);
    networks_.vae->eval();
  }
  if (options.train_text_encoder()) setup_text_encoder_training();
  if (options.has_adapter()) setup_adapters();
  const bool low_precision = options.frozen_in_compute_dtype() && context.compute_dtype != torch::kFloat32;
  text_encoder_in_compute_dtype_ = low_precision && !options.train_text_encoder();
  vae_in_compute_dtype_ = low_precision && networks_.vae;
  if (text_encoder_in_compute_dtype_) {
    cast_floating(*networks_.text_encoder, torch::kCPU, context.compute_dtype);
    if (networks_.text_encoder_2) cast_floating(*networks_.text_encoder_2, torch::kCPU, context.compute_dtype);
  }
  if (vae_in_compute_dtype_) cast_floating(*networks_.vae, torch::kCPU, context.compute_dtype);
  // A frozen UNet runs under the run's autocast (its adapters are float32), which lowers its
  // Linear and Conv2d layers only; its norms keep float32 parameters as autocast expects.
  if (low_precision && lora_) cast_matmul_layers(*networks_.unet, context.compute_dtype);
  if (text_encoder_in_compute_dtype_ || vae_in_compute_dtype_) {
    std::vector<std::string> parts;
    if (text_encoder_in_compute_dtype_) parts.emplace_back(networks_.text_encoder_2 ? "text encoders" : "text encoder");
    if (vae_in_compute_dtype_) parts.emplace_back("autoencoder");
    if (low_precision && lora_) parts.emplace_back("UNet Linear and Conv2d layers");
    SDTRAIN_LOG(INFO) << "frozen " << join(parts, ", ") << " held in " << c10::toString(context.compute_dtype)
                      << " (frozen_in_compute_dtype)";
  }
  setup_caches(context);
}

void StableDiffusionModel::setup_text_encoder_training() {
  if (options_.cache().text_embeddings()) {
    throw ConfigError("cache.text_embeddings: cannot be on with train_text_encoder: the text encoder's output "
                      "changes as it trains");
  }
  if (options_.has_adapter()) {
    throw ConfigError("train_text_encoder: cannot be combined with adapter (the base stays frozen with adapters; "
                      "set adapter.lora.text_encoder to train adapters on the text encoder)");
  }
  if (!(options_.text_encoder_lr_factor() >= 0)) throw ConfigError("text_encoder_lr_factor: must be >= 0");
  unet_and_text_encoder_ =
      std::make_shared<UNetAndTextEncoder>(networks_.unet, networks_.text_encoder, networks_.text_encoder_2);
  text_encoder_trained_ = true;
  // The file's EMA holds the UNet only; the text encoder's EMA starts from its trained weights.
  std::map<std::string, torch::Tensor> renamed;
  for (auto& [name, tensor] : ema_start_) renamed["unet." + name] = std::move(tensor);
  ema_start_ = std::move(renamed);
}

void StableDiffusionModel::setup_adapters() {
  if (!options_.adapter().has_lora()) throw ConfigError("adapter: set, but holds no adapter kind (lora)");
  const LoraOptions& lora = options_.adapter().lora();
  if (lora.text_encoder() && options_.cache().text_embeddings()) {
    throw ConfigError("cache.text_embeddings: cannot be on with adapter.lora.text_encoder: the text encoder's "
                      "output changes as its adapters train");
  }
  // The base as loaded, before any cast to the run's precision: adapters fit this base only.
  identity_["base_model"] = module_fingerprint(*networks_.unet) + "+" + module_fingerprint(*networks_.text_encoder) +
                           (networks_.text_encoder_2 ? "+" + module_fingerprint(*networks_.text_encoder_2) : "");
  identity_["base_weights"] = options_.weights().empty() ? std::string("(random initialisation)") : options_.weights();
  for (auto& parameter : networks_.unet->parameters()) parameter.set_requires_grad(false);
  ema_start_.clear();  // the file's EMA is of the base UNet, not of adapters
  ema_start_updates_ = 0;
  lora_ = LoraNetwork(lora, networks_);
  text_encoder_trained_ = lora.text_encoder();
  adapter_dropout_ = lora.dropout() > 0 || lora.rank_dropout() > 0 || lora.module_dropout() > 0;
  SDTRAIN_LOG(INFO) << lora_->describe();
}

torch::nn::Module& StableDiffusionModel::trainable_module() {
  if (lora_) return *lora_;
  if (unet_and_text_encoder_) return *unet_and_text_encoder_;
  return *networks_.unet;
}

std::vector<ParameterGroup> StableDiffusionModel::parameter_groups() const {
  if (unet_and_text_encoder_) {
    std::vector<ParameterGroup> groups{ParameterGroup{"unet", "unet."},
                                       ParameterGroup{"text_encoder", "text_encoder.", options_.text_encoder_lr_factor()}};
    // SDXL's second encoder learns at the same rate (kohya's sdxl_train.py can set the two apart).
    if (networks_.text_encoder_2) {
      groups.push_back(ParameterGroup{"text_encoder_2", "text_encoder_2.", options_.text_encoder_lr_factor()});
    }
    return groups;
  }
  if (!lora_) return {ParameterGroup{"unet", ""}};
  const LoraOptions& lora = options_.adapter().lora();
  std::vector<ParameterGroup> groups{ParameterGroup{"lora_unet", "lora_unet_", lora.unet_lr_factor()}};
  // "lora_te": one text encoder's "lora_te_*", and SDXL's two, "lora_te1_*" and "lora_te2_*".
  if (lora.text_encoder()) groups.push_back(ParameterGroup{"lora_te", "lora_te", lora.text_encoder_lr_factor()});
  return groups;
}

void StableDiffusionModel::seed_adapter_dropout(const Batch& batch) const {
  // FNV-1a over the sample seeds: the same micro-batch draws the same masks, on a resume too.
  uint64_t seed = 1469598103934665603ULL;
  for (const uint64_t sample_seed : batch.seeds) seed = (seed ^ sample_seed) * 1099511628211ULL;
  for (const torch::Device device : {torch::Device(torch::kCPU), device_}) {
    at::Generator generator = at::globalContext().defaultGenerator(device);
    std::lock_guard<std::mutex> lock(generator.mutex());
    generator.set_current_seed(seed);
  }
}

void StableDiffusionModel::setup_caches(const PluginContext& context) {
  const SdCacheOptions& cache = options_.cache();
  if (!cache.latents() && !cache.text_embeddings()) {
    if (!cache.dir().empty()) {
      throw ConfigError("cache.dir: set to '" + cache.dir() +
                        "' but neither cache.latents nor cache.text_embeddings is on");
    }
    return;
  }
  if (cache.max_memory_mb() < 0) throw ConfigError("cache.max_memory_mb: must be >= 0 (0: no limit)");
  if (cache.latents() && !networks_.vae) {
    throw ConfigError("cache.latents: first_stage PIXELS has no autoencoder whose latents could be cached");
  }
  const std::string dir = cache.dir().empty() ? std::string() : resolve_config_path(context.base_dir, cache.dir());
  // The encoders run under the run's autocast (AutocastScope in the trainer), so their outputs
  // depend on it: the precision is part of every key, and training_loss checks it is the one in
  // force before using the caches.
  const std::string tag = context.compute_dtype == torch::kBFloat16 ? "bf16"
                          : context.compute_dtype == torch::kHalf   ? "fp16"
                                                                    : "fp32";
  const int64_t memory_limit = dir.empty() ? cache.max_memory_mb() * 1024 * 1024 : 0;
  if (cache.latents()) {
    latent_cache_ = std::make_shared<SdLatentCache>(dir, module_fingerprint(*networks_.vae), tag, memory_limit);
  }
  if (cache.text_embeddings()) {
    // Keyed by every encoder the conditioning comes from (SDXL: both).
    std::string encoders = module_fingerprint(*networks_.text_encoder);
    if (networks_.text_encoder_2) encoders += "+" + module_fingerprint(*networks_.text_encoder_2);
    text_cache_ = std::make_unique<SdTextCache>(dir, encoders, tag, memory_limit);
  }
  std::string where = "on disk in " + dir;
  if (dir.empty()) {
    where = memory_limit > 0 ? "in memory (at most " + std::to_string(cache.max_memory_mb()) + " MB each)"
                             : "in memory (no size limit)";
  }
  SDTRAIN_LOG(INFO) << "cache: " << (cache.latents() ? "latents (posterior moments per image and flip)" : "")
                    << (cache.latents() && cache.text_embeddings() ? " and " : "")
                    << (cache.text_embeddings() ? "text embeddings" : "") << " "
                    << where;
}

void StableDiffusionModel::count(const Batch& batch, int64_t SdCacheCounts::*field) {
  // Only the training loader gives origins: validation-loss batches are not part of an epoch's figures.
  if (batch.origins.empty()) return;
  ++(epoch_counts_.*field);
  ++(total_counts_.*field);
}

void StableDiffusionModel::on_train_epoch_end(int64_t epoch) {
  if (!latent_cache_ && !text_cache_) return;
  const SdCacheCounts& c = epoch_counts_;
  std::string line = "cache, epoch " + std::to_string(epoch) + " (this rank):";
  if (latent_cache_) {
    line += " latents " + std::to_string(c.latent_hits) + " hits, " + std::to_string(c.latent_misses) +
            " misses (encoded and stored)";
    if (c.latent_uncacheable > 0) line += ", " + std::to_string(c.latent_uncacheable) + " uncacheable (random crop)";
    if (!latent_cache_->storage().on_disk()) {
      line += ", " + std::to_string(latent_cache_->storage().memory_entries()) + " entries";
    }
    if (text_cache_) line += ";";
  }
  if (text_cache_) {
    line += " text embeddings " + std::to_string(c.text_hits) + " hits, " + std::to_string(c.text_misses) + " misses";
  }
  SDTRAIN_LOG(INFO) << line;
  epoch_counts_ = SdCacheCounts();
}

void StableDiffusionModel::to(const torch::Device& device) {
  device_ = device;
  alphas_cumprod_ = noise_scheduler_->alphas_cumprod().to(device);
  networks_.unet->to(device);
  if (lora_) lora_->to(device);
  networks_.text_encoder->to(device);
  if (networks_.vae) networks_.vae->to(device);
}

torch::Tensor StableDiffusionModel::posterior_moments(const Batch& batch, const torch::Tensor& pixels) {
  torch::NoGradGuard no_grad;
  const auto size = static_cast<int64_t>(batch.seeds.size());
  const bool has_cached = !batch.cached.empty();
  TORCH_CHECK(!has_cached || (latent_cache_ && static_cast<int64_t>(batch.cached.size()) == size),
              "stable_diffusion: a batch with cached samples needs cache.latents and one entry per sample");
  const bool use_cache = latent_cache_ && static_cast<int64_t>(batch.origins.size()) == size;
  if (use_cache) {
    TORCH_CHECK(autocast_tag(device_) == latent_cache_->precision(), "stable_diffusion: the latent cache holds ",
                latent_cache_->precision(), " encoder outputs but training_loss runs in ", autocast_tag(device_),
                " (the run's precision must be in force around training_loss)");
  }
  std::vector<torch::Tensor> moments(static_cast<std::size_t>(size));
  std::vector<int64_t> to_encode;  // sample indices
  std::vector<int64_t> rows;       // their rows in `pixels`
  int64_t row = 0;
  for (int64_t i = 0; i < size; ++i) {
    if (has_cached && batch.cached[i].defined()) {  // the loader found it and did not decode the image
      moments[i] = batch.cached[i];
      count(batch, &SdCacheCounts::latent_hits);
      continue;
    }
    const int64_t pixel_row = row++;
    if (use_cache) {
      const PixelsOrigin& origin = batch.origins[i];
      if (origin.deterministic) {
        torch::Tensor found = latent_cache_->find(origin);
        if (found.defined()) {
          moments[i] = found;
          count(batch, &SdCacheCounts::latent_hits);
          continue;
        }
        count(batch, &SdCacheCounts::latent_misses);
      } else {
        count(batch, &SdCacheCounts::latent_uncacheable);
        if (!warned_uncacheable_) {
          warned_uncacheable_ = true;
          SDTRAIN_LOG_ALL_RANKS(WARNING)
              << "cache.latents: " << batch.keys.at(i) << " is not cached: its random crop has a choice of window ("
              << origin.transform << "); only images whose resized size equals data.transforms.resolution, or "
              << "data.transforms.crop: CENTER, are cached. Further such samples are counted, not named.";
        }
      }
    }
    to_encode.push_back(i);
    rows.push_back(pixel_row);
  }
  TORCH_CHECK(pixels.size(0) == row, "stable_diffusion: batch.pixels has ", pixels.size(0), " rows for ", row,
              " samples without a cached entry");
  if (!to_encode.empty()) {
    const torch::Tensor selected =
        static_cast<int64_t>(rows.size()) == pixels.size(0)
            ? pixels
            : pixels.index_select(0, torch::tensor(rows, torch::kInt64).to(pixels.device()));
    // The moments exactly as DiagonalGaussian holds them (mean, clamped log-variance): rebuilding
    // the posterior from them gives the same tensors, cached or not.
    const torch::Tensor encoded = encode_moments(selected);
    // Nothing cached: the batch as it is, in the standard layout that stacking cached rows gives
    // too (the encoder's output may come channels-last, which changes the UNet's rounding).
    if (static_cast<int64_t>(to_encode.size()) == size && !use_cache) return encoded.contiguous();
    for (std::size_t j = 0; j < to_encode.size(); ++j) {
      const int64_t i = to_encode[j];
      moments[i] = encoded[static_cast<int64_t>(j)];
      if (use_cache && batch.origins[i].deterministic) latent_cache_->store(batch.origins[i], moments[i]);
    }
  }
  return stack_on_device(moments, device_);
}

torch::Tensor StableDiffusionModel::encode_moments(const torch::Tensor& pixels) {
  if (!vae_in_compute_dtype_) {
    const DiagonalGaussian posterior = networks_.vae->encode(pixels);
    return torch::cat({posterior.mean(), posterior.logvar()}, 1);
  }
  AutocastDisabled plain(device_.type());
  const DiagonalGaussian posterior = networks_.vae->encode(pixels.to(context_.compute_dtype));
  return torch::cat({posterior.mean(), posterior.logvar()}, 1).to(torch::kFloat32);
}

PromptConditioning StableDiffusionModel::encode_captions(const std::vector<std::string>& captions) {
  if (!text_encoder_in_compute_dtype_) return encode_prompt_conditioning(networks_, captions, device_);
  AutocastDisabled plain(device_.type());
  PromptConditioning encoded = encode_prompt_conditioning(networks_, captions, device_);
  encoded.context = encoded.context.to(torch::kFloat32);
  if (encoded.text_embeds.defined()) encoded.text_embeds = encoded.text_embeds.to(torch::kFloat32);
  return encoded;
}

namespace {

/// One caption's conditioning as one cache row: the context, with a pooled embedding flattened
/// and followed by it (so that both are stored, and found, together).
torch::Tensor cache_row(const PromptConditioning& encoded, int64_t j) {
  if (!encoded.text_embeds.defined()) return encoded.context[j];
  return torch::cat({encoded.context[j].flatten(), encoded.text_embeds[j]});
}

/// Stacked cache rows [B, ...] back into the conditioning; `pooled` is the pooled width (0: none).
PromptConditioning from_cache_rows(const torch::Tensor& rows, int64_t context_width, int64_t pooled) {
  if (pooled == 0) return {rows, {}};
  const int64_t batch = rows.size(0);
  const int64_t context = rows.size(1) - pooled;
  return {rows.narrow(1, 0, context).view({batch, context / context_width, context_width}), rows.narrow(1, context, pooled)};
}

}  // namespace

PromptConditioning StableDiffusionModel::text_conditioning(const Batch& batch) {
  torch::AutoGradMode grad_mode(text_encoder_trained_ && torch::GradMode::is_enabled());
  const int64_t pooled = networks_.text_encoder_2 ? networks_.text_encoder_2->config().projection_dim() : 0;
  PromptConditioning conditioning;
  if (!text_cache_) {
    conditioning = encode_captions(batch.captions);
  } else {
    TORCH_CHECK(autocast_tag(device_) == text_cache_->precision(), "stable_diffusion: the text cache holds ",
                text_cache_->precision(), " encoder outputs but training_loss runs in ", autocast_tag(device_));
    std::unordered_map<std::string, torch::Tensor> embeddings;
    std::vector<std::string> missing;
    for (const std::string& caption : batch.captions) {
      if (embeddings.count(caption)) {
        count(batch, &SdCacheCounts::text_hits);
        continue;
      }
      torch::Tensor found = text_cache_->find(caption);
      if (found.defined()) {
        count(batch, &SdCacheCounts::text_hits);
      } else {
        count(batch, &SdCacheCounts::text_misses);
        missing.push_back(caption);
      }
      embeddings[caption] = found;  // undefined until encoded below
    }
    if (!missing.empty()) {
      const PromptConditioning encoded = encode_captions(missing);
      for (std::size_t j = 0; j < missing.size(); ++j) {
        embeddings[missing[j]] = cache_row(encoded, static_cast<int64_t>(j));
        text_cache_->store(missing[j], embeddings[missing[j]]);
      }
    }
    std::vector<torch::Tensor> rows;
    rows.reserve(batch.captions.size());
    for (const std::string& caption : batch.captions) rows.push_back(embeddings.at(caption));
    conditioning = from_cache_rows(stack_on_device(rows, device_), options_.unet().cross_attention_dim(), pooled);
  }
  if (networks_.zero_empty_negative_prompt) {
    // SDXL's unconditional is zeros (force_zeros_for_empty_prompt): a dropped caption trains it.
    std::vector<float> keep;
    for (const std::string& caption : batch.captions) keep.push_back(caption.empty() ? 0.0f : 1.0f);
    if (std::find(keep.begin(), keep.end(), 0.0f) != keep.end()) {
      const torch::Tensor mask = torch::tensor(keep).to(device_);
      conditioning.context = conditioning.context * mask.view({-1, 1, 1}).to(conditioning.context.scalar_type());
      conditioning.text_embeds = conditioning.text_embeds * mask.view({-1, 1}).to(conditioning.text_embeds.scalar_type());
    }
  }
  return conditioning;
}

torch::Tensor StableDiffusionModel::size_conditioning(const Batch& batch, int64_t height, int64_t width) const {
  torch::Tensor host =
      training_size_time_ids(batch.origins, static_cast<int64_t>(batch.captions.size()), height, width);
  if (device_.is_cuda()) host = host.pin_memory();
  return host.to(device_, /*non_blocking=*/true);
}

StableDiffusionModel::SampleDraws StableDiffusionModel::draw_per_sample(std::vector<at::Generator>& generators,
                                                                       const std::vector<int64_t>& latent_shape,
                                                                       bool posterior) const {
  const auto size = static_cast<int64_t>(generators.size());
  int64_t per_sample = 1;
  for (const int64_t extent : latent_shape) per_sample *= extent;
  const int64_t noise_begin = posterior ? size * per_sample : 0;
  const int64_t timesteps_begin = noise_begin + size * per_sample;
  // One host buffer (pinned for a GPU) holds every draw, so that one non-blocking copy moves
  // them all; the timesteps travel as float32, exact below 2^24.
  torch::Tensor host = torch::empty({timesteps_begin + size}, torch::TensorOptions()
                                                                  .dtype(torch::kFloat32)
                                                                  .pinned_memory(device_.is_cuda()));
  const int64_t num_timesteps = noise_scheduler_->num_train_timesteps();
  for (int64_t i = 0; i < size; ++i) {
    at::Generator& generator = generators[static_cast<std::size_t>(i)];
    if (posterior) {
      const torch::Tensor posterior_noise = torch::randn(latent_shape, generator, torch::kFloat32);
      host.narrow(0, i * per_sample, per_sample).copy_(posterior_noise.flatten());
    }
    torch::Tensor sample_noise = torch::randn(latent_shape, generator, torch::kFloat32);
    if (options_.noise_offset() != 0) {
      const torch::Tensor offset = torch::randn({latent_shape[0], 1, 1}, generator, torch::kFloat32);
      sample_noise = sample_noise + options_.noise_offset() * offset;
    }
    host.narrow(0, noise_begin + i * per_sample, per_sample).copy_(sample_noise.flatten());
    const int64_t timestep = torch::randint(0, num_timesteps, {1}, generator, torch::kInt64).item<int64_t>();
    host[timesteps_begin + i] = static_cast<double>(timestep);
  }
  const torch::Tensor on_device = host.to(device_, /*non_blocking=*/true);
  std::vector<int64_t> batch_shape{size};
  batch_shape.insert(batch_shape.end(), latent_shape.begin(), latent_shape.end());
  SampleDraws draws;
  if (posterior) draws.posterior_noise = on_device.narrow(0, 0, size * per_sample).view(batch_shape);
  draws.noise = on_device.narrow(0, noise_begin, size * per_sample).view(batch_shape);
  draws.timesteps = on_device.narrow(0, timesteps_begin, size).to(torch::kInt64);
  return draws;
}

torch::Tensor StableDiffusionModel::training_loss(const Batch& batch) {
  TORCH_CHECK(batch.pixels.defined() && !batch.seeds.empty() && batch.captions.size() == batch.seeds.size(),
              "stable_diffusion: a training batch needs pixels, one seed and one caption per sample");
  const torch::Tensor pixels = batch.pixels.to(device_);
  const auto size = static_cast<int64_t>(batch.seeds.size());
  std::vector<at::Generator> generators = sample_generators(batch);
  if (adapter_dropout_) seed_adapter_dropout(batch);

  torch::Tensor moments;
  std::vector<int64_t> latent_shape;
  if (networks_.vae) {
    moments = posterior_moments(batch, pixels);
    latent_shape = {moments.size(1) / 2, moments.size(2), moments.size(3)};
  } else {
    TORCH_CHECK(pixels.size(0) == size, "stable_diffusion: batch.pixels needs one row per seed");
    latent_shape = {pixels.size(1), pixels.size(2), pixels.size(3)};
  }

  const SampleDraws draws = draw_per_sample(generators, latent_shape, /*posterior=*/static_cast<bool>(networks_.vae));
  torch::Tensor latents = pixels;
  if (networks_.vae) {
    torch::NoGradGuard no_grad;
    const DiagonalGaussian posterior(moments);
    latents = posterior.sample_with_noise(draws.posterior_noise) * networks_.scaling_factor;
  }
  const torch::Tensor& noise_batch = draws.noise;
  const torch::Tensor& t = draws.timesteps;

  const PromptConditioning conditioning = text_conditioning(batch);
  UNetAddedConditions added;
  if (networks_.text_encoder_2) {
    const int64_t factor = networks_.vae ? networks_.vae->downsample_factor() : 1;
    added.text_embeds = conditioning.text_embeds;
    added.time_ids = size_conditioning(batch, latents.size(2) * factor, latents.size(3) * factor);
  }
  const torch::Tensor noisy = noise_scheduler_->add_noise(latents, noise_batch, t);
  const torch::Tensor prediction = networks_.unet->forward(noisy, t, conditioning.context, added);
  const torch::Tensor target =
      noise::training_target(noise_scheduler_->prediction_type(), alphas_cumprod_, latents, noise_batch, t);
  torch::Tensor per_sample = (prediction.to(torch::kFloat32) - target.to(torch::kFloat32)).pow(2).reshape({size, -1}).mean(1);
  if (options_.min_snr_gamma() > 0) {
    // On the device, from the device's copy of the schedule: no host wait.
    const torch::Tensor snr = noise::compute_snr(alphas_cumprod_, t);
    per_sample =
        per_sample * noise::min_snr_loss_weights(snr, options_.min_snr_gamma(), noise_scheduler_->prediction_type());
  }
  return reduce_sample_losses(per_sample, batch);
}

PluginSpec StableDiffusionModel::training_noise_scheduler() const {
  return options_.has_noise_scheduler() ? options_.noise_scheduler() : default_noise_scheduler();
}

std::vector<Image> StableDiffusionModel::sample(const SampleRequest& request) {
  const PluginSpec spec = sampler_with_training_schedule(request, training_noise_scheduler());
  std::unique_ptr<NoiseScheduler> sampler = Registry<NoiseScheduler>::instance().create(spec, context_, "sampler");
  if (request.prompts.empty()) return {};  // a check: the sampler takes the training schedule
  const bool was_training = networks_.unet->is_training();
  const bool adapters_training = lora_ && lora_->is_training();
  networks_.unet->eval();
  if (lora_) lora_->eval();  // no adapter dropout while sampling
  std::vector<Image> images = txt2img(networks_, *sampler, request, device_);
  if (was_training) networks_.unet->train();
  if (adapters_training) lora_->train();
  return images;
}

BatchPreview StableDiffusionModel::preview_batch(const Batch& batch, int count) {
  BatchPreview preview = Model::preview_batch(batch, count);
  if (!networks_.vae || preview.inputs.empty()) return preview;
  torch::NoGradGuard no_grad;
  std::vector<torch::Tensor> moments(preview.inputs.size());
  // The samples without a cached entry, in order: their pixels are the first rows of batch.pixels.
  std::vector<std::size_t> encoded_samples;
  for (std::size_t i = 0; i < moments.size(); ++i) {
    if (!batch.cached.empty() && batch.cached[i].defined()) {
      moments[i] = batch.cached[i].to(device_, torch::kFloat32);
    } else {
      encoded_samples.push_back(i);
    }
  }
  if (!encoded_samples.empty()) {
    const auto rows = static_cast<int64_t>(encoded_samples.size());
    const torch::Tensor encoded = encode_moments(batch.pixels.narrow(0, 0, rows).to(device_));
    for (std::size_t j = 0; j < encoded_samples.size(); ++j) moments[encoded_samples[j]] = encoded[static_cast<int64_t>(j)];
  }
  const torch::Tensor stacked = torch::stack(moments);
  // Dense: on some CPUs (seen on an AMD EPYC) the decoder's kernels round differently on a
  // channel-slice view than on a dense tensor of equal values, and a user decodes a dense one.
  const torch::Tensor mean = stacked.narrow(1, 0, stacked.size(1) / 2).contiguous();
  torch::Tensor decoded;
  if (vae_in_compute_dtype_) {
    AutocastDisabled plain(device_.type());
    decoded = networks_.vae->decode(mean.to(context_.compute_dtype));
  } else {
    decoded = networks_.vae->decode(mean);
  }
  preview.reconstructions = images_from_pixels(decoded);
  preview.height = static_cast<int>(decoded.size(2));
  preview.width = static_cast<int>(decoded.size(3));
  return preview;
}

std::string StableDiffusionModel::export_unavailable_reason() const {
  if (lora_ && !options_.adapter().lora().export_merged()) return "";  // adapter files need no autoencoder
  if (!networks_.vae) {
    return "stable_diffusion with first_stage: PIXELS has no autoencoder, so there is no diffusers pipeline to "
           "export";
  }
  return "";
}

void StableDiffusionModel::export_pretrained(const std::string& folder) {
  const std::string reason = export_unavailable_reason();
  if (!reason.empty()) throw ConfigError("final_export: " + reason);
  if (lora_ && !options_.adapter().lora().export_merged()) {
    export_lora_folder(lora_file_of(lora_, options_, context_.base_dir), lora_targets(networks_), folder);
    return;
  }
  save_sd_weights(merged_weights(), folder, SdFormat::kDiffusers);
}

void StableDiffusionModel::merge_adapters() {
  if (!lora_ || !lora_->is_attached()) return;
  const LoraFile adapters = lora_file_of(lora_, options_, context_.base_dir);
  lora_->detach();
  merge_lora(networks_, adapters, 1.0, lora_targets(networks_));
}

SdWeights StableDiffusionModel::merged_weights() {
  merge_adapters();
  return weights_for_export(networks_, options_, source_configs_, source_tokenizer_dir_, source_tokenizer_2_dir_);
}

SDTRAIN_REGISTER_MODEL("stable_diffusion", StableDiffusionOptions,
                       "Stable Diffusion v1 / 2.x / SDXL: UNet fine-tuned, autoencoder and CLIP text encoders frozen",
                       [](const StableDiffusionOptions& options, const PluginContext& context) {
                         return std::make_unique<StableDiffusionModel>(options, context);
                       });

}  // namespace sdtrain
