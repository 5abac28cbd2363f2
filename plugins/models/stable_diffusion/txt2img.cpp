#include "plugins/models/stable_diffusion/txt2img.h"

#include "plugins/schedulers/noise/guidance.h"

namespace sdtrain {

torch::Tensor encode_prompts(const SdNetworks& networks, const std::vector<std::string>& prompts,
                             const torch::Device& device) {
  torch::Tensor ids = networks.tokenizer->tokenize(prompts);
  // From pinned memory without blocking: a copy from pageable memory makes the host wait for the
  // GPU (once per training micro-batch).
  if (device.is_cuda()) ids = ids.pin_memory();
  ids = ids.to(device, /*non_blocking=*/true);
  ClipTextModel text_encoder = networks.text_encoder;  // a holder copy shares the module
  return text_encoder->forward(ids).last_hidden_state;
}

std::vector<Image> txt2img(const SdNetworks& networks, NoiseScheduler& sampler, const SampleRequest& request,
                           const torch::Device& device, const std::function<void(int, int)>& on_step) {
  torch::NoGradGuard no_grad;
  TORCH_CHECK(request.height % 8 == 0 && request.width % 8 == 0, "txt2img: height and width must be multiples of 8, got ",
              request.height, "x", request.width);
  const auto batch = static_cast<int64_t>(request.prompts.size());
  TORCH_CHECK(batch > 0, "txt2img: no prompts");
  const bool guided = request.guidance_scale > 1.0;

  torch::Tensor context = encode_prompts(networks, request.prompts, device);
  if (guided) {
    const torch::Tensor uncond =
        encode_prompts(networks, std::vector<std::string>(static_cast<std::size_t>(batch), request.negative_prompt), device);
    context = torch::cat({uncond, context});
  }

  UNet2DConditionModel unet = networks.unet;  // holder copies share the modules
  AutoencoderKL vae = networks.vae;
  const int64_t channels = unet->config().in_channels();
  // Networks may hold fp16/bf16 weights; the sampler's arithmetic stays in fp32 (as the latents).
  const auto unet_dtype = unet->parameters().front().scalar_type();
  context = context.to(unet_dtype);
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
    torch::Tensor prediction = unet->forward(input, t.to(device), context).to(torch::kFloat32);
    if (guided) prediction = noise::apply_cfg(prediction, request.guidance_scale, request.guidance_rescale);
    latents = sampler.step(prediction, t, latents, &generator);
    if (on_step) on_step(i + 1, total);
  }
  torch::Tensor images =
      vae ? vae->decode((latents / networks.scaling_factor).to(vae->parameters().front().scalar_type())) : latents;
  return images_from_pixels(images);  // rounding as diffusers' numpy_to_pil
}

}  // namespace sdtrain
