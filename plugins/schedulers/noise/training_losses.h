#pragma once
/// Training-loss helpers of diffusers' examples/text_to_image/train_text_to_image.py, as free
/// functions over any NoiseScheduler's alphas_cumprod.
#include <string>

#include <torch/torch.h>

#include "sdtrain/noise_scheduler.h"

namespace sdtrain {
namespace noise {

/// Noise for a training step: randn(shape of `latents`) and, when `offset` != 0, plus
/// offset * randn(B, C, 1, 1) (the script's --noise_offset; Guttenberg's offset noise). Both draws
/// come from `generator` in that order (null: the default CPU generator), in latents' dtype, on
/// the generator's device, then moved to latents' device.
torch::Tensor offset_noise(const torch::Tensor& latents, double offset, at::Generator* generator);

/// SNR(t) = (sqrt(abar_t) / sqrt(1 - abar_t))^2, float32 shaped like `timesteps` (integer)
/// (diffusers.training_utils.compute_snr). `alphas_cumprod` is [T], on timesteps' device (or the
/// result is copied there).
torch::Tensor compute_snr(const torch::Tensor& alphas_cumprod, const torch::Tensor& timesteps);

/// Min-SNR-gamma loss weights (Hang et al. 2023) per sample: min(snr, gamma) / snr for
/// "epsilon", min(snr, gamma) / (snr + 1) for "v_prediction", min(snr, gamma) otherwise — the
/// training script's formula. Multiply the per-sample mean MSE by them.
torch::Tensor min_snr_loss_weights(const torch::Tensor& snr, double gamma, const std::string& prediction_type);

/// The regression target for `prediction_type` (a NoiseScheduler's): `noise` for epsilon,
/// sqrt(abar_t) * noise - sqrt(1 - abar_t) * latents for v_prediction, `latents` for sample, with
/// abar from `alphas_cumprod` [T] (pass it on latents' device: a copy from the host per step would
/// make the host wait for a GPU).
torch::Tensor training_target(const std::string& prediction_type, const torch::Tensor& alphas_cumprod,
                              const torch::Tensor& latents, const torch::Tensor& noise,
                              const torch::Tensor& timesteps);

}  // namespace noise
}  // namespace sdtrain
