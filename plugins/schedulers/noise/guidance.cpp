#include "plugins/schedulers/noise/guidance.h"

#include <vector>

namespace sdtrain {
namespace noise {

torch::Tensor apply_cfg(const torch::Tensor& noise_pred_batched, double scale, double rescale) {
  TORCH_CHECK(noise_pred_batched.dim() >= 1 && noise_pred_batched.size(0) > 0 && noise_pred_batched.size(0) % 2 == 0,
              "apply_cfg: expected a batch of 2B predictions (uncond then cond), got shape ",
              noise_pred_batched.sizes());
  const auto halves = noise_pred_batched.chunk(2);
  const torch::Tensor& uncond = halves[0];
  const torch::Tensor& cond = halves[1];
  const torch::Tensor guided = uncond + scale * (cond - uncond);
  if (rescale <= 0) return guided;
  // diffusers' rescale_noise_cfg, in its order of operations (unbiased std over all but dim 0).
  std::vector<int64_t> dims;
  for (int64_t d = 1; d < guided.dim(); ++d) dims.push_back(d);
  const torch::Tensor std_cond = cond.std(dims, /*unbiased=*/true, /*keepdim=*/true);
  const torch::Tensor std_guided = guided.std(dims, /*unbiased=*/true, /*keepdim=*/true);
  const torch::Tensor rescaled = guided * (std_cond / std_guided);
  return rescale * rescaled + (1 - rescale) * guided;
}

}  // namespace noise
}  // namespace sdtrain
