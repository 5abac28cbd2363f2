#pragma once
/// Classifier-free guidance (Ho & Salimans 2022) as diffusers' StableDiffusionPipeline applies it.
#include <torch/torch.h>

namespace sdtrain {
namespace noise {

/// Combines a batched denoiser output into the guided prediction:
/// uncond + scale * (cond - uncond), where `noise_pred_batched` is [2B, ...] holding the
/// unconditional predictions first and the conditional ones second (diffusers' order:
/// `noise_pred.chunk(2)` of a batch built as cat([negative_embeds, prompt_embeds])).
/// With `rescale` > 0 the guided prediction is then pulled towards the conditional one's per-sample
/// standard deviation as diffusers' rescale_noise_cfg does (Lin et al. 2023, sec. 3.4):
///   guided = rescale * guided * std(cond) / std(guided) + (1 - rescale) * guided.
/// Returns [B, ...] in the input's dtype. TORCH_CHECK fails on an odd or empty first dimension.
torch::Tensor apply_cfg(const torch::Tensor& noise_pred_batched, double scale, double rescale = 0.0);

}  // namespace noise
}  // namespace sdtrain
