#pragma once
/// The noise scheduler plugin family: the forward (noising) process for training and the samplers
/// for inference, with diffusers' scheduler contract. Registered with SDTRAIN_REGISTER_SCHEDULER
/// (plugin.h).
#include <cstdint>
#include <string>

#include <torch/torch.h>

namespace sdtrain {

/// A diffusion noise scheduler: the forward process for training and one sampler for inference.
/// Mirrors diffusers' SchedulerMixin so results can be compared step for step.
class NoiseScheduler {
 public:
  virtual ~NoiseScheduler() = default;

  /// Number of training timesteps (1000 for SD v1).
  virtual int64_t num_train_timesteps() const = 0;

  /// Cumulative product of (1 - beta_t) over the training timesteps: float32
  /// [num_train_timesteps] on the CPU. Training losses derive SNR and v-targets from it.
  virtual torch::Tensor alphas_cumprod() const = 0;

  /// What the denoiser predicts: "epsilon", "v_prediction" or "sample".
  virtual std::string prediction_type() const = 0;

  /// Forward process as this class's diffusers add_noise: for the DDPM family
  /// sqrt(abar_t) * original + sqrt(1 - abar_t) * noise (any training timestep); for the sigma
  /// samplers (euler, euler_ancestral) original + sigma_t * noise and for dpmpp_2m
  /// alpha_t * original + sigma_t * noise, where t must be one of timesteps() (or any training
  /// timestep before set_timesteps). `timesteps` is integer or float [B]; broadcast over the
  /// remaining dimensions.
  virtual torch::Tensor add_noise(const torch::Tensor& original, const torch::Tensor& noise,
                                  const torch::Tensor& timesteps) const = 0;

  /// Prepares a sampling schedule of `num_inference_steps` steps; resets multistep history.
  virtual void set_timesteps(int64_t num_inference_steps) = 0;

  /// The timesteps of the current schedule in sampling order (as diffusers' `timesteps`).
  virtual torch::Tensor timesteps() const = 0;

  /// Standard deviation of the initial latent noise.
  virtual double init_noise_sigma() const = 0;

  /// Scales the denoiser input at `timestep` (identity for DDPM-family samplers).
  virtual torch::Tensor scale_model_input(const torch::Tensor& sample, const torch::Tensor& timestep) = 0;

  /// One sampling step from `sample` at `timestep` given the model's prediction; returns the
  /// previous sample. Stochastic samplers draw noise from `generator` (nullptr: default CPU one).
  virtual torch::Tensor step(const torch::Tensor& model_output, const torch::Tensor& timestep,
                             const torch::Tensor& sample, at::Generator* generator) = 0;
};

}  // namespace sdtrain
