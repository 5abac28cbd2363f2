#pragma once
/// The "stable_diffusion" model plugin: SD v1 latent diffusion fine-tuning (the UNet trained,
/// the autoencoder and CLIP text encoder frozen) and sampling.
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "framework/registry/registry.h"
#include "plugins/models/stable_diffusion/modules/lora_network.h"
#include "plugins/models/stable_diffusion/sd_encoder_cache.h"
#include "plugins/models/stable_diffusion/stable_diffusion.pb.h"
#include "plugins/models/stable_diffusion/txt2img.h"
#include "plugins/models/stable_diffusion/weights/sd_weights.h"
#include "sdtrain/model.h"
#include "sdtrain/noise_scheduler.h"

namespace sdtrain {

class StableDiffusionModel : public Model {
 public:
  /// Builds the networks from `options` (sizes; SD v1 when unset), loads options.weights when
  /// given (non-strict unless strict_weights; mismatches are logged by name), freezes the text
  /// encoder and the autoencoder, and casts them to context.compute_dtype when that is bf16/fp16
  /// and options.frozen_in_compute_dtype (exports then hold them at that precision, as diffusers'
  /// train_text_to_image.py saves them). Throws ConfigError naming the option at fault.
  StableDiffusionModel(const StableDiffusionOptions& options, const PluginContext& context);

  /// The UNet (the recipe's); with options.train_text_encoder a module holding the UNet
  /// ("unet.*") and the text encoder ("text_encoder.*"; SDXL's second "text_encoder_2.*"); with
  /// options.adapter the LoRA network (only its adapters).
  torch::nn::Module& trainable_module() override;
  /// One group "unet"; with train_text_encoder "unet" and "text_encoder" (its lr factor; SDXL
  /// also "text_encoder_2", the same factor); with LoRA "lora_unet" and, with
  /// adapter.lora.text_encoder, "lora_te" (SDXL: both encoders' adapters), each with its
  /// learning-rate factor.
  std::vector<ParameterGroup> parameter_groups() const override;
  /// With adapters, the base networks' fingerprint ("base_model": SHA-256 of the UNet's and the
  /// text encoder's tensors as loaded) and the weights file: adapters fit only their base.
  std::map<std::string, std::string> checkpoint_identity() const override { return identity_; }
  void to(const torch::Device& device) override;

  /// The recipe's training step for each sample i, all randomness from a CPU generator seeded
  /// with batch.seeds[i], drawn in this order: the posterior sample's noise (VAE only), the
  /// diffusion noise (plus the offset-noise term when noise_offset > 0), the timestep
  /// t ~ U{0, T-1}. Then x_t = add_noise(z, noise, t), prediction = UNet(x_t, t, CLIP(caption)),
  /// loss = mean((prediction - target)^2) per sample (target per the scheduler's prediction
  /// type; min-SNR-gamma weights when set), averaged over the batch (reduce_sample_losses: with
  /// DreamBooth's class samples, the instance mean plus the weighted class mean).
  /// With options.cache (sd_encoder_cache.h), the posterior's moments and the text embeddings of
  /// samples seen before come from the caches (batch.cached, filled by the data loader, or a
  /// lookup by batch.origins); batches without origins (validation loss) bypass the latent cache.
  /// The draws above are unchanged, so the loss equals the uncached one up to the encoders'
  /// batch-composition rounding. Hits and misses are logged at each on_train_epoch_end (rank 0).
  torch::Tensor training_loss(const Batch& batch) override;
  bool supports_prior_preservation() const override { return true; }

  /// The latent cache when options.cache.latents, for the data loader (no decoding on hits).
  std::shared_ptr<const PixelCache> pixel_cache() const override { return latent_cache_; }

  /// Logs the epoch's cache hits and misses (rank 0) when a cache is on.
  void on_train_epoch_end(int64_t epoch) override;

  /// The spec of the noise scheduler the model trains with (options.noise_scheduler, else SD v1's
  /// DDPM schedule).
  PluginSpec training_noise_scheduler() const;

  /// Samples with request.sampler under the training noise schedule (options.noise_scheduler's
  /// betas, prediction type, zero terminal SNR, spacing; the request's own options override it),
  /// so a v-prediction model's grids are v-prediction. No prompts: the sampler is built, nothing drawn.
  std::vector<Image> sample(const SampleRequest& request) override;

  /// The inputs (Model's default) and, with an autoencoder, its reconstruction of each sample:
  /// the decoding of the posterior mean (the cached moments for a sample the loader served from
  /// the latent cache, so it has a reconstruction though no input), as the LDM ImageLogger's
  /// "reconstruction" grid up to the posterior's noise. Runs in float32 unless the autoencoder is
  /// held in the run's bf16/fp16; counts no cache hits and stores nothing in the caches.
  BatchPreview preview_batch(const Batch& batch, int count) override;

  /// "" with an autoencoder, or with adapters exported as adapter files; first_stage PIXELS has
  /// no diffusers pipeline to export.
  std::string export_unavailable_reason() const override;
  /// A diffusers folder (model_index.json, unet/ vae/ text_encoder/ scheduler/ and a tokenizer:
  /// the weights folder's when loaded from one, else CLIP's for CLIP's vocabulary) with the
  /// current weights and configs from the options (sd_export.h); loads with
  /// StableDiffusionPipeline.from_pretrained. Atomic, never overwrites (save_sd_weights).
  /// With LoRA: the adapter files (sd_adapter_export.h), or with adapter.lora.export_merged the
  /// pipeline with the adapters merged into the base (they are detached: the export ends a run).
  void export_pretrained(const std::string& folder) override;

  /// The whole model's current weights in the layout weights files hold (diffusers names, the
  /// configs and tokenizer of options.weights): what export_pretrained writes as a pipeline. With
  /// LoRA the adapters are first baked into the base (diffusers' fuse_lora) and detached, so the
  /// model computes as before with one weight per layer and trains no adapters any more.
  SdWeights merged_weights();
  /// Bakes the LoRA adapters into the base and detaches them (merged_weights' first half); no-op
  /// without adapters or once done.
  void merge_adapters();

  /// The weights file's EMA UNet when options.ema_from_weights and the file has one, handed over:
  /// the tensors view the file's mapping, which the model would otherwise keep alive (with the
  /// 3.4 GB of it the load read resident) for the whole run. A second call returns nothing.
  std::map<std::string, torch::Tensor> ema_start_weights() override { return std::exchange(ema_start_, {}); }
  /// The file's model_ema.num_updates with its EMA UNet (0 without one): the recipe's non-strict
  /// load restores it, so the EMA's decay stays at 0.9999 instead of warming up again.
  int64_t ema_start_updates() const override { return ema_start_updates_; }

  const SdNetworks& networks() const { return networks_; }
  /// The LoRA adapters (null without options.adapter).
  const LoraNetwork& lora() const { return lora_; }
  const StableDiffusionOptions& options() const { return options_; }
  /// Cache statistics since construction (all zero without options.cache).
  const SdCacheCounts& cache_counts() const { return total_counts_; }

 private:
  void load_weights(const std::string& path);
  void setup_caches(const PluginContext& context);
  /// Freezes the UNet, wraps the layers options.adapter.lora selects and records the base's
  /// fingerprint. Throws ConfigError naming the option at fault.
  void setup_adapters();
  /// Makes the text encoder(s) trainable beside the UNet (options.train_text_encoder). Throws
  /// ConfigError for the options it rules out.
  void setup_text_encoder_training();
  /// Seeds the default generators from the batch's sample seeds, for the adapters' dropout.
  void seed_adapter_dropout(const Batch& batch) const;
  /// Posterior moments [B, 2C, h, w] of every sample: cached, or encoded from batch pixels.
  torch::Tensor posterior_moments(const Batch& batch, const torch::Tensor& pixels);
  /// The UNet's text conditioning for the batch's captions (context [B, 77, cross_attention_dim];
  /// with text_encoder_2 also the pooled text_embeds), through the text cache if on. With
  /// text_encoder_2 an empty caption (caption dropout) conditions on zeros, as SDXL's pipelines
  /// treat the empty prompt (force_zeros_for_empty_prompt).
  PromptConditioning text_conditioning(const Batch& batch);
  /// SDXL's size conditioning of the batch [B, 6] on the device (training_size_time_ids).
  torch::Tensor size_conditioning(const Batch& batch, int64_t height, int64_t width) const;
  /// The autoencoder's posterior moments (mean, clamped log-variance) of `pixels`, and the text
  /// conditioning for `captions`: under the run's autocast, or, when that part is held in the
  /// compute dtype (vae_in_compute_dtype_, text_encoder_in_compute_dtype_), in its own precision
  /// with autocast off, returned as float32.
  torch::Tensor encode_moments(const torch::Tensor& pixels);
  PromptConditioning encode_captions(const std::vector<std::string>& captions);
  /// Each sample's draws from its generator, in training_loss's order, on the model's device.
  struct SampleDraws {
    torch::Tensor posterior_noise;  ///< [B, latent_shape...], VAE only
    torch::Tensor noise;            ///< [B, latent_shape...]
    torch::Tensor timesteps;        ///< [B] int64
  };
  SampleDraws draw_per_sample(std::vector<at::Generator>& generators, const std::vector<int64_t>& latent_shape,
                              bool posterior) const;
  /// Adds one to `field` of the epoch and total counts, for training-loader batches only.
  void count(const Batch& batch, int64_t SdCacheCounts::*field);

  StableDiffusionOptions options_;
  PluginContext context_;
  ClipTokenizer tokenizer_;
  ClipTokenizer tokenizer_2_;  ///< with options.text_encoder_2 (SDXL)
  SdNetworks networks_;
  std::unique_ptr<NoiseScheduler> noise_scheduler_;
  torch::Tensor alphas_cumprod_;  ///< the training schedule's, on device_ (v-targets, min-SNR weights)
  std::map<std::string, torch::Tensor> ema_start_;
  int64_t ema_start_updates_ = 0;  ///< model_ema.num_updates of options.weights
  std::map<std::string, std::string> source_configs_;  ///< config.json texts of options.weights
  std::string source_tokenizer_dir_;                   ///< tokenizer folder of options.weights
  std::string source_tokenizer_2_dir_;                 ///< its tokenizer_2 folder (SDXL)
  torch::Device device_{torch::kCPU};
  std::shared_ptr<SdLatentCache> latent_cache_;
  std::unique_ptr<SdTextCache> text_cache_;
  SdCacheCounts epoch_counts_;
  SdCacheCounts total_counts_;
  bool warned_uncacheable_ = false;
  /// The frozen text encoder / autoencoder is held and run in the run's bf16/fp16
  /// (options.frozen_in_compute_dtype).
  bool text_encoder_in_compute_dtype_ = false;
  bool vae_in_compute_dtype_ = false;
  std::shared_ptr<torch::nn::Module> unet_and_text_encoder_;  ///< with train_text_encoder
  LoraNetwork lora_{nullptr};
  bool text_encoder_trained_ = false;  ///< gradients flow through the text encoder (its weights or adapters)
  bool adapter_dropout_ = false;       ///< some adapter dropout is on
  std::map<std::string, std::string> identity_;
};

}  // namespace sdtrain
