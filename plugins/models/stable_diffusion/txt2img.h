#pragma once
/// Text-to-image sampling with classifier-free guidance, step for step as diffusers'
/// StableDiffusionPipeline.__call__ (and StableDiffusionXLPipeline.__call__ for networks with two
/// text encoders), shared by `sdsample` and the validation image logger.
#include <functional>
#include <vector>

#include <torch/torch.h>

#include "plugins/models/stable_diffusion/modules/autoencoder_kl.h"
#include "plugins/models/stable_diffusion/modules/clip_text_model.h"
#include "plugins/models/stable_diffusion/modules/unet_2d_condition_model.h"
#include "plugins/models/stable_diffusion/tokenizer/clip_tokenizer.h"
#include "sdtrain/image.h"
#include "sdtrain/model.h"
#include "sdtrain/noise_scheduler.h"

namespace sdtrain {

/// The networks a sampling run uses. `vae` is null for a pixel-space model (the UNet then
/// denoises images in [-1, 1] directly, at full resolution).
struct SdNetworks {
  const ClipTokenizer* tokenizer = nullptr;
  ClipTextModel text_encoder{nullptr};
  /// SDXL's second text encoder (with a projection) and its tokenizer; null with one encoder.
  const ClipTokenizer* tokenizer_2 = nullptr;
  ClipTextModel text_encoder_2{nullptr};
  UNet2DConditionModel unet{nullptr};
  AutoencoderKL vae{nullptr};
  double scaling_factor = 0.18215;
  /// An empty negative prompt conditions the unconditional half on zeros instead of the encoding
  /// of "" (diffusers' force_zeros_for_empty_prompt, true in SDXL's pipelines).
  bool zero_empty_negative_prompt = false;
};

/// What the UNet is conditioned on for a batch of prompts.
struct PromptConditioning {
  torch::Tensor context;      ///< [N, 77, cross_attention_dim]
  torch::Tensor text_embeds;  ///< [N, projection_dim]: the second encoder's projected pooled output;
                              ///< undefined with one encoder
};

/// Encodes prompts. One text encoder: its last hidden state (after the final norm). Two (SDXL):
/// the penultimate layer's hidden states of both (no final norm) concatenated along the features,
/// and the second's text_embeds, as StableDiffusionXLPipeline.encode_prompt. Records gradients
/// when grad mode is on (text-encoder adapters in training); callers that only infer turn it off.
PromptConditioning encode_prompt_conditioning(const SdNetworks& networks, const std::vector<std::string>& prompts,
                                              const torch::Device& device);

/// encode_prompt_conditioning(...).context.
torch::Tensor encode_prompts(const SdNetworks& networks, const std::vector<std::string>& prompts,
                             const torch::Device& device);


/// Draws one image per prompt. How randomness is drawn (so that equal seeds give equal images
/// to diffusers on the CPU in fp32):
///   1. one CPU generator seeded with request.seed;
///   2. initial latents = randn([N, C, H/8, W/8]) from it (H, W for pixel space), times the
///      sampler's init_noise_sigma — diffusers' randn_tensor with a CPU generator;
///   3. each sampler step that adds noise (DDIM eta > 0, Euler ancestral, DDPM) draws from the
///      same generator, as diffusers passes its generator to scheduler.step.
/// Guidance runs the unconditional (request.negative_prompt) and conditional halves as one
/// batch [uncond; cond] when guidance_scale > 1. A UNet with the text_time embedding (SDXL) gets
/// the pooled text embeddings and size_time_ids(original = target = the image size, crop 0, 0).
/// `on_step(i, total)` reports progress.
std::vector<Image> txt2img(const SdNetworks& networks, NoiseScheduler& sampler, const SampleRequest& request,
                           const torch::Device& device, const std::function<void(int, int)>& on_step = {});

}  // namespace sdtrain
