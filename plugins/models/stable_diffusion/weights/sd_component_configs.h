#pragma once
/// diffusers / transformers config.json → the module config messages the sdtrain networks are
/// built from, and a pipeline's scheduler_config.json → a sampler plugin's options, so that a
/// model folder samples with the sizes and noise schedule it was saved with (as
/// `XScheduler.from_config(pipe.scheduler.config)` does in diffusers), or under a model's training
/// noise schedule.
#include <string>

#include "plugins/models/stable_diffusion/sd_modules.pb.h"
#include "proto/sdtrain.pb.h"
#include "sdtrain/model.h"

namespace sdtrain {

/// UNet2DConditionModel config.json → UNet2DConditionConfig. Keys that name a field set it
/// (a per-block list whose values are all equal counts as that value, as SD v1's
/// attention_head_dim: 8); keys the modules do not model are ignored unless they hold a value
/// that would change the network (e.g. class_embed_type, upcast_attention true), which is a
/// FormatError "<source>: <key>: ...". `source` names the file in messages.
UNet2DConditionConfig unet_config_from_json(const std::string& json, const std::string& source);
/// AutoencoderKL config.json → AutoencoderKLConfig (scaling_factor included).
AutoencoderKLConfig vae_config_from_json(const std::string& json, const std::string& source);
/// CLIPTextModel / CLIPTextModelWithProjection config.json (transformers) → ClipTextConfig;
/// projection_dim is kept only when "architectures" names CLIPTextModelWithProjection (transformers
/// writes it for every CLIP text config).
ClipTextConfig clip_config_from_json(const std::string& json, const std::string& source);

/// The options of sampler plugin `sampler` (a registered scheduler name, e.g. "ddim") filled
/// from a diffusers scheduler_config.json: the noise schedule (num_train_timesteps, beta_start,
/// beta_end, beta_schedule, prediction_type, timestep_spacing, steps_offset) and the sampler's own
/// fields of the same name (set_alpha_to_one, clip_sample, skip_prk_steps, ...). Keys the config
/// lacks take the diffusers class's own default, as `XScheduler.from_config(pipe.scheduler.config)`
/// does (e.g. DDIM from SD's PNDM config clips samples). `scheduler_json` "" (an original .ckpt,
/// which carries no scheduler config) keeps the plugin's defaults, SD v1's as in the CompVis
/// scripts. Throws ConfigError listing the registered schedulers
/// for an unknown name, FormatError naming `source` and the key for a value of the wrong kind.
PluginSpec sampler_spec_from_scheduler_config(const std::string& sampler, const std::string& scheduler_json,
                                              const std::string& source);

/// The sampler of `request` (request.sampler with request.sampler_options) under the training noise
/// schedule of `training` (a scheduler plugin's spec: its "schedule" message, i.e. betas, prediction
/// type, zero terminal SNR, spacing), the request's own options set on top: a v-prediction model
/// is sampled as one. Unknown plugin names are passed through for the registry to report;
/// sampler_options of another sampler's type are a ConfigError naming both types.
PluginSpec sampler_with_training_schedule(const SampleRequest& request, const PluginSpec& training);

}  // namespace sdtrain
