#include "plugins/schedulers/noise/guidance.h"

namespace sdtrain {
namespace noise {

torch::Tensor apply_cfg(const torch::Tensor& noise_pred_batched, double scale) {
  TORCH_CHECK(noise_pred_batched.dim() >= 1 && noise_pred_batched.size(0) > 0 && noise_pred_batched.size(0) % 2 == 0,
              "apply_cfg: expected a batch of 2B predictions (uncond then cond), got shape ",
              noise_pred_batched.sizes());
  const auto halves = noise_pred_batched.chunk(2);
  const torch::Tensor& uncond = halves[0];
  const torch::Tensor& cond = halves[1];
  return uncond + scale * (cond - uncond);
}

}  // namespace noise
}  // namespace sdtrain
