#pragma once
/// A Stable Diffusion v1 / 2.x / SDXL pipeline loaded from a model file for sampling (`sdsample`):
/// the tokenizer(s), the networks with the sizes the model was saved with, and its scheduler
/// configuration — what diffusers' StableDiffusionPipeline / StableDiffusionXLPipeline
/// .from_pretrained gives.
#include <memory>
#include <string>

#include <torch/torch.h>

#include "plugins/models/stable_diffusion/stable_diffusion_model.h"
#include "plugins/models/stable_diffusion/txt2img.h"

namespace sdtrain {

class SdPipeline {
 public:
  /// Loads `path`: a diffusers folder, an original (CompVis/Lightning) .ckpt or an original
  /// single-file .safetensors. Sizes come from the folder's config.json files (or the configs a
  /// file written by sdtrain embeds), else they are inferred from the tensor shapes. Every weight
  /// must be present with the expected shape (FormatError naming the file and the keys at fault);
  /// a text encoder whose vocabulary is not the tokenizer's is refused, and so is a UNet whose
  /// cross_attention_dim (SDXL: text_time input width) is not what the text encoders give. The
  /// tokenizer is the folder's (tokenizer/merges.txt, which must hold CLIP's merges) or CLIP's
  /// built-in one; SDXL's second likewise (tokenizer_2/, else CLIP's padding with "!").
  /// `use_ema`: take the file's EMA UNet (model_ema.*) when it has one.
  /// A training checkpoint folder (written by sdtrain: manifest.json + trainer_state.json) is
  /// loaded as the run's "stable_diffusion" model built from its stored config (pretrained weights
  /// resolved against the run's config folder) with the UNet replaced by the checkpoint's trained
  /// weights, or its EMA weights with `use_ema`; samplers then use the run's training schedule.
  /// `prediction_type` ("epsilon", "v_prediction"; "" = as the source says) overrides the
  /// scheduler config's; an SD 2.x original single file, which does not record it
  /// (prediction_type_is_known), needs it (FormatError naming the file otherwise). A checkpoint
  /// folder refuses it (ConfigError): its run's noise scheduler decides.
  static std::unique_ptr<SdPipeline> load(const std::string& path, bool use_ema,
                                          const std::string& prediction_type = "");

  /// The registry spec of sampler `name` for this model: under the scheduler config the model
  /// came with (sampler_spec_from_scheduler_config), or, from a training checkpoint, under the
  /// run's training noise schedule (sampler_with_training_schedule).
  PluginSpec sampler_spec(const std::string& name) const;

  /// Whether `path` was a training checkpoint folder.
  bool from_checkpoint() const { return model_ != nullptr; }
  /// From a training checkpoint: the whole model's weights (the trained ones in, LoRA adapters
  /// merged; StableDiffusionModel::merged_weights) as they are now, for conversion (`sdconvert`,
  /// before any to()). std::logic_error for other sources (read those with load_sd_weights).
  SdWeights checkpoint_weights();

  /// Moves the networks to `device` and casts their floating-point weights to `dtype`.
  void to(const torch::Device& device, torch::ScalarType dtype);

  /// The networks (eval mode, no gradients); valid while this pipeline lives.
  const SdNetworks& networks() const { return networks_; }
  /// The scheduler_config.json text the model came with ("" when it had none: SD v1 defaults).
  const std::string& scheduler_config() const { return scheduler_config_; }
  /// Where that text came from, for messages.
  const std::string& scheduler_config_source() const { return scheduler_config_source_; }

  SdPipeline(const SdPipeline&) = delete;
  SdPipeline& operator=(const SdPipeline&) = delete;

 private:
  SdPipeline() = default;
  static std::unique_ptr<SdPipeline> load_checkpoint(const std::string& folder, bool use_ema);

  std::unique_ptr<StableDiffusionModel> model_;  ///< owns the networks of a loaded checkpoint

  std::unique_ptr<ClipTokenizer> tokenizer_;
  std::unique_ptr<ClipTokenizer> tokenizer_2_;  ///< SDXL's second tokenizer
  SdNetworks networks_;
  std::string scheduler_config_;
  std::string scheduler_config_source_;
};

}  // namespace sdtrain
