#pragma once
/// Text-to-image sampling with classifier-free guidance, step for step as diffusers'
/// StableDiffusionPipeline.__call__, shared by `sdsample` and the validation image logger.
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
  UNet2DConditionModel unet{nullptr};
  AutoencoderKL vae{nullptr};
  double scaling_factor = 0.18215;
};

/// Encodes prompts to the UNet's context: [N, 77, hidden] (last hidden state). Records gradients
/// when grad mode is on (text-encoder adapters in training); callers that only infer turn it off.
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
/// batch [uncond; cond] when guidance_scale > 1. `on_step(i, total)` reports progress.
std::vector<Image> txt2img(const SdNetworks& networks, NoiseScheduler& sampler, const SampleRequest& request,
                           const torch::Device& device, const std::function<void(int, int)>& on_step = {});

}  // namespace sdtrain
