#include "plugins/models/stable_diffusion/txt2img.h"

#include "plugins/models/stable_diffusion/sd_size_conditioning.h"
#include "plugins/schedulers/noise/guidance.h"

namespace sdtrain {

namespace {

torch::Tensor token_ids(const ClipTokenizer& tokenizer, const std::vector<std::string>& prompts,
                        const torch::Device& device) {
  torch::Tensor ids = tokenizer.tokenize(prompts);
  // From pinned memory without blocking: a copy from pageable memory makes the host wait for the
  // GPU (once per training micro-batch).
  if (device.is_cuda()) ids = ids.pin_memory();
  return ids.to(device, /*non_blocking=*/true);
}

/// The output of the layer before the last (hidden_states holds the embeddings first).
torch::Tensor penultimate(const ClipTextOutput& output) { return output.hidden_states.at(output.hidden_states.size() - 2); }

}  // namespace

PromptConditioning encode_prompt_conditioning(const SdNetworks& networks, const std::vector<std::string>& prompts,
                                              const torch::Device& device) {
  ClipTextModel text_encoder = networks.text_encoder;  // holder copies share the modules
  if (!networks.text_encoder_2) {
    return {text_encoder->forward(token_ids(*networks.tokenizer, prompts, device)).last_hidden_state, {}};
  }
  ClipTextModel text_encoder_2 = networks.text_encoder_2;
  const ClipTextOutput first = text_encoder->forward(token_ids(*networks.tokenizer, prompts, device), {}, true);
  const ClipTextOutput second = text_encoder_2->forward(token_ids(*networks.tokenizer_2, prompts, device), {}, true);
  return {torch::cat({penultimate(first), penultimate(second)}, -1), second.text_embeds};
}

torch::Tensor encode_prompts(const SdNetworks& networks, const std::vector<std::string>& prompts,
                             const torch::Device& device) {
  return encode_prompt_conditioning(networks, prompts, device).context;
}


std::vector<Image> txt2img(const SdNetworks& networks, NoiseScheduler& sampler, const SampleRequest& request,
                           const torch::Device& device, const std::function<void(int, int)>& on_step) {
  torch::NoGradGuard no_grad;
  TORCH_CHECK(request.height % 8 == 0 && request.width % 8 == 0, "txt2img: height and width must be multiples of 8, got ",
              request.height, "x", request.width);
  const auto batch = static_cast<int64_t>(request.prompts.size());
  TORCH_CHECK(batch > 0, "txt2img: no prompts");
  const bool guided = request.guidance_scale > 1.0;

  PromptConditioning conditioning = encode_prompt_conditioning(networks, request.prompts, device);
  if (guided) {
    PromptConditioning uncond;
    if (request.negative_prompt.empty() && networks.zero_empty_negative_prompt) {
      uncond = {torch::zeros_like(conditioning.context),
                conditioning.text_embeds.defined() ? torch::zeros_like(conditioning.text_embeds) : torch::Tensor()};
    } else {
      uncond = encode_prompt_conditioning(
          networks, std::vector<std::string>(static_cast<std::size_t>(batch), request.negative_prompt), device);
    }
    conditioning.context = torch::cat({uncond.context, conditioning.context});
    if (conditioning.text_embeds.defined()) {
      conditioning.text_embeds = torch::cat({uncond.text_embeds, conditioning.text_embeds});
    }
  }
  torch::Tensor context = conditioning.context;

  UNet2DConditionModel unet = networks.unet;  // holder copies share the modules
  AutoencoderKL vae = networks.vae;
  const int64_t channels = unet->config().in_channels();
  // Networks may hold fp16/bf16 weights; the sampler's arithmetic stays in fp32 (as the latents).
  const auto unet_dtype = unet->parameters().front().scalar_type();
  context = context.to(unet_dtype);
  UNetAddedConditions added;
  if (!unet->config().addition_embed_type().empty()) {
    TORCH_CHECK(conditioning.text_embeds.defined(), "txt2img: the UNet's ", unet->config().addition_embed_type(),
                " embedding needs a second text encoder's pooled output");
    added.text_embeds = conditioning.text_embeds.to(unet_dtype);
    added.time_ids = size_time_ids(context.size(0), request.height, request.width, 0, 0, request.height, request.width)
                         .to(device, unet_dtype);
  }
  const int64_t factor = vae ? vae->downsample_factor() : 1;
  auto generator = at::detail::createCPUGenerator(request.seed);
  sampler.set_timesteps(request.steps);
  torch::Tensor latents =
      torch::randn({batch, channels, request.height / factor, request.width / factor}, generator, torch::kFloat32)
          .to(device);
  latents = latents * sampler.init_noise_sigma();

  const torch::Tensor timesteps = sampler.timesteps();
  const auto total = static_cast<int>(timesteps.size(0));
  for (int i = 0; i < total; ++i) {
    const torch::Tensor t = timesteps[i];
    torch::Tensor input = guided ? torch::cat({latents, latents}) : latents;
    input = sampler.scale_model_input(input, t).to(unet_dtype);
    torch::Tensor prediction = unet->forward(input, t.to(device), context, added).to(torch::kFloat32);
    if (guided) prediction = noise::apply_cfg(prediction, request.guidance_scale, request.guidance_rescale);
    latents = sampler.step(prediction, t, latents, &generator);
    if (on_step) on_step(i + 1, total);
  }
  torch::Tensor images =
      vae ? vae->decode((latents / networks.scaling_factor).to(vae->parameters().front().scalar_type())) : latents;
  return images_from_pixels(images);  // rounding as diffusers' numpy_to_pil
}

}  // namespace sdtrain
