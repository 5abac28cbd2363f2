#include "plugins/models/stable_diffusion/sd_pipeline.h"

#include <algorithm>
#include <filesystem>
#include <stdexcept>

#include "framework/train/autocast.h"
#include "framework/train/checkpoint_snapshot.h"
#include "framework/util/strings.h"
#include "plugins/models/stable_diffusion/modules/module_cast.h"
#include "plugins/models/stable_diffusion/modules/state_dict_loader.h"
#include "plugins/models/stable_diffusion/sd_conditioning_fit.h"
#include "plugins/models/stable_diffusion/weights/sd_component_configs.h"
#include "plugins/models/stable_diffusion/weights/sd_diffusers_config.h"
#include "plugins/models/stable_diffusion/weights/sd_tokenizer_files.h"
#include "plugins/models/stable_diffusion/weights/sd_weights.h"
#include "plugins/models/stable_diffusion/weights/sd_weights_io.h"
#include "sdtrain/errors.h"

namespace fs = std::filesystem;

namespace sdtrain {
namespace {

/// The component's config.json text and a name for messages: the source's own, else inferred.
std::pair<std::string, std::string> component_config(const SdWeights& weights, const std::string& path,
                                                     const std::string& component) {
  const bool carried = weights.configs.count(component) != 0;
  return {component_config_json(weights, component),
          path + " (" + component + (carried ? "/config.json)" : " config inferred from the weights)")};
}

/// A text encoder built from its config, checked against its tokenizer's vocabulary.
ClipTextModel text_encoder_for(const SdWeights& weights, const std::string& path, const std::string& component,
                               const ClipTokenizer& tokenizer) {
  const auto [json, source] = component_config(weights, path, component);
  const ClipTextConfig config = clip_config_from_json(json, source);
  if (config.vocab_size() != tokenizer.vocab_size()) {
    throw FormatError(source + ": vocab_size " + std::to_string(config.vocab_size()) + " is not the CLIP tokenizer's " +
                      std::to_string(tokenizer.vocab_size()));
  }
  return ClipTextModel(config);
}

void freeze(torch::nn::Module& module) {
  for (auto& parameter : module.parameters()) parameter.set_requires_grad(false);
  module.eval();
}

}  // namespace

std::unique_ptr<SdPipeline> SdPipeline::load_checkpoint(const std::string& folder, bool use_ema) {
  CheckpointSnapshot snapshot = read_checkpoint_snapshot(folder, use_ema);
  const PluginSpec& spec = snapshot.config.model();
  if (spec.type() != "stable_diffusion") {
    throw FormatError(folder + ": the run trained a '" + spec.type() + "' model; sdsample samples stable_diffusion");
  }
  StableDiffusionOptions options;
  if (spec.has_options() && !spec.options().UnpackTo(&options)) {
    throw FormatError(folder + ": model.options is not a StableDiffusionOptions message");
  }
  // Sampling chooses its own precision (to()): the frozen parts as loaded, not at the run's.
  options.set_frozen_in_compute_dtype(false);
  // Checkpoints written before the effective config kept presence (proto's presence_matters)
  // record a default `adapter { lora {} }` for runs that trained no adapter; their weights tell.
  const bool holds_adapters = std::any_of(snapshot.weights.begin(), snapshot.weights.end(),
                                          [](const auto& item) { return item.first.rfind("lora_", 0) == 0; });
  if (options.has_adapter() && !holds_adapters) options.clear_adapter();
  PluginContext context;
  context.compute_dtype = autocast_dtype(snapshot.config.precision());
  context.max_steps = snapshot.config.run().max_steps();
  context.base_dir = snapshot.config_dir;
  std::unique_ptr<SdPipeline> pipeline(new SdPipeline());
  // The checkpoint holds the trained UNet only; frozen parts that the run initialised randomly
  // (a model without `weights`, like the demo's text encoder) are rebuilt exactly as the trainer
  // built them: from run.seed, set right before the model is constructed.
  torch::manual_seed(snapshot.config.run().seed());
  pipeline->model_ = std::make_unique<StableDiffusionModel>(options, context);
  pipeline->networks_ = pipeline->model_->networks();
  // The trained module as the run named it: the UNet, the UNet and the text encoder
  // (train_text_encoder), or LoRA adapters, which are then baked into the base so that the
  // networks compute alone (and can be cast and moved as a whole).
  load_parameters_strict(pipeline->model_->trainable_module(), snapshot.weights,
                         folder + (snapshot.ema ? "/ema.safetensors" : "/model.safetensors"));
  pipeline->model_->merge_adapters();
  freeze(*pipeline->networks_.unet);
  freeze(*pipeline->networks_.text_encoder);
  return pipeline;
}

std::unique_ptr<SdPipeline> SdPipeline::load(const std::string& path, bool use_ema, const std::string& prediction_type) {
  if (!fs::exists(path)) throw FormatError(path + ": no such file or folder");
  if (is_checkpoint_folder(path)) {
    if (!prediction_type.empty()) {
      throw ConfigError(path + ": a training checkpoint is sampled with its run's noise schedule; no prediction type "
                               "can be given for it");
    }
    return load_checkpoint(path, use_ema);
  }
  SdLoadOptions options;
  options.use_ema = use_ema;
  options.strict = false;  // the component checks below name every key at fault
  SdWeights weights = load_sd_weights(path, options);
  if (!prediction_type.empty()) {
    const auto scheduler = weights.configs.find("scheduler");
    weights.configs["scheduler"] = scheduler_config_with_prediction_type(
        scheduler == weights.configs.end() ? "" : scheduler->second, prediction_type, "prediction type");
  } else if (!prediction_type_is_known(weights)) {
    throw FormatError(path + ": an SD 2.x single file does not record whether its UNet predicts noise (the 512 px "
                             "base models: epsilon) or v (the 768 px models: v_prediction); give it (--prediction-type)");
  }

  std::unique_ptr<SdPipeline> pipeline(new SdPipeline());
  pipeline->tokenizer_ = std::make_unique<ClipTokenizer>(weights_tokenizer(weights));
  SdNetworks& networks = pipeline->networks_;
  networks.tokenizer = pipeline->tokenizer_.get();
  networks.text_encoder = text_encoder_for(weights, path, "text_encoder", *pipeline->tokenizer_);
  if (weights.is_sdxl()) {
    pipeline->tokenizer_2_ = std::make_unique<ClipTokenizer>(weights_tokenizer_2(weights));
    networks.tokenizer_2 = pipeline->tokenizer_2_.get();
    networks.text_encoder_2 = text_encoder_for(weights, path, "text_encoder_2", *pipeline->tokenizer_2_);
    networks.zero_empty_negative_prompt = true;  // SDXL pipelines' force_zeros_for_empty_prompt
  }
  const auto [unet_json, unet_source] = component_config(weights, path, "unet");
  const auto [vae_json, vae_source] = component_config(weights, path, "vae");
  const UNet2DConditionConfig unet_config = unet_config_from_json(unet_json, unet_source);
  if (const auto misfit = conditioning_misfit(
          unet_config, networks.text_encoder->config(),
          networks.text_encoder_2 ? &networks.text_encoder_2->config() : nullptr)) {
    throw FormatError(unet_source + ": " + misfit->text());
  }
  networks.unet = UNet2DConditionModel(unet_config);
  networks.vae = AutoencoderKL(vae_config_from_json(vae_json, vae_source));
  networks.scaling_factor = networks.vae->scaling_factor();
  load_component_exactly(*networks.unet, weights.unet, "unet", path);
  load_component_exactly(*networks.vae, weights.vae, "vae", path);
  load_component_exactly(*networks.text_encoder, weights.text_encoder, "text_encoder", path);
  if (networks.text_encoder_2) load_component_exactly(*networks.text_encoder_2, weights.text_encoder_2, "text_encoder_2", path);
  freeze(*networks.unet);
  freeze(*networks.vae);
  freeze(*networks.text_encoder);
  if (networks.text_encoder_2) freeze(*networks.text_encoder_2);

  const auto scheduler = weights.configs.find("scheduler");
  if (scheduler != weights.configs.end()) {
    pipeline->scheduler_config_ = scheduler->second;
    pipeline->scheduler_config_source_ = path + " (scheduler/scheduler_config.json)";
  }
  return pipeline;
}

PluginSpec SdPipeline::sampler_spec(const std::string& name) const {
  if (model_) {
    SampleRequest request;
    request.sampler = name;
    return sampler_with_training_schedule(request, model_->training_noise_scheduler());
  }
  return sampler_spec_from_scheduler_config(name, scheduler_config_, scheduler_config_source_);
}

SdWeights SdPipeline::checkpoint_weights() {
  if (!model_) throw std::logic_error("SdPipeline::checkpoint_weights: not loaded from a training checkpoint");
  return model_->merged_weights();
}

void SdPipeline::to(const torch::Device& device, torch::ScalarType dtype) {
  cast_floating(*networks_.unet, device, dtype);
  cast_floating(*networks_.text_encoder, device, dtype);
  if (networks_.text_encoder_2) cast_floating(*networks_.text_encoder_2, device, dtype);
  if (!networks_.vae.is_empty()) cast_floating(*networks_.vae, device, dtype);  // pixel-space models have none
}

}  // namespace sdtrain
