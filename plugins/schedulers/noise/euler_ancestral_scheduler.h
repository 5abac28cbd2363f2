#pragma once
/// "euler_ancestral": diffusers' EulerAncestralDiscreteScheduler (k-diffusion's
/// sample_euler_ancestral with eta = 1).
///
/// Noise: every step() (the last one included, where it is multiplied by 0) draws one tensor
/// shaped like model_output with torch::randn(shape, generator) on the generator's device (the
/// default CPU generator when null), as diffusers' randn_tensor(model_output.shape,
/// generator=generator); the same seeded CPU generator gives the same values as Python.
#include <torch/torch.h>

#include "plugins/schedulers/noise/schedulers.pb.h"
#include "plugins/schedulers/noise/sigma_scheduler.h"

namespace sdtrain {
namespace noise {

class EulerAncestralScheduler : public SigmaScheduler {
 public:
  /// Throws ConfigError for prediction_type SAMPLE (unsupported, as in diffusers).
  explicit EulerAncestralScheduler(const EulerAncestralSchedulerOptions& options);

  void set_timesteps(int64_t num_inference_steps) override;
  /// An Euler step to sigma_down, then noise * sigma_up.
  torch::Tensor step(const torch::Tensor& model_output, const torch::Tensor& timestep,
                     const torch::Tensor& sample, at::Generator* generator) override;
};

}  // namespace noise
}  // namespace sdtrain
