#pragma once
/// "euler": diffusers' EulerDiscreteScheduler (Karras et al. 2022, Algorithm 2) without churn
/// (s_churn = 0, as StableDiffusionPipeline calls it), so it is deterministic and draws no noise.
#include <torch/torch.h>

#include "plugins/schedulers/noise/schedulers.pb.h"
#include "plugins/schedulers/noise/sigma_scheduler.h"

namespace sdtrain {
namespace noise {

class EulerScheduler : public SigmaScheduler {
 public:
  explicit EulerScheduler(const EulerSchedulerOptions& options);

  void set_timesteps(int64_t num_inference_steps) override;
  /// x_{i+1} = x_i + (x_i - x0) / sigma_i * (sigma_{i+1} - sigma_i).
  torch::Tensor step(const torch::Tensor& model_output, const torch::Tensor& timestep,
                     const torch::Tensor& sample, at::Generator* generator) override;

 private:
  EulerSchedulerOptions options_;
};

}  // namespace noise
}  // namespace sdtrain
