#pragma once
/// Numeric building blocks of the noise schedulers, written to reproduce diffusers bit for bit:
/// diffusers computes the timestep grids and sigma interpolation with numpy in float64 and the
/// rest with float32 torch tensors, and these helpers follow the same arithmetic in the same order
/// (numpy's linspace / arange / interp / round-half-to-even are re-implemented, not approximated).
#include <cstdint>
#include <string>
#include <vector>

#include <torch/torch.h>

#include "plugins/schedulers/noise/schedulers.pb.h"

namespace sdtrain {
namespace noise {

/// betas of the training schedule, float32 [num_train_timesteps] (diffusers' __init__).
/// Throws ConfigError naming the field (prefixed by `where` + "." unless empty) on bad values.
torch::Tensor make_betas(const NoiseScheduleOptions& options, const std::string& where);

/// numpy.linspace(start, stop, num) in float64 (endpoint included, last value exactly `stop`).
std::vector<double> numpy_linspace(double start, double stop, int64_t num);

/// numpy.arange(start, stop, step) for a float step, with numpy's fill rule
/// (value i = start + i * ((start + step) - start)).
std::vector<double> numpy_arange(double start, double stop, double step);

/// numpy.round: round half to even.
double round_half_even(double value);

/// The integer inference timesteps, descending, as DDPM/DDIM's set_timesteps makes them for
/// `spacing` (see NoiseScheduleOptions.TimestepSpacing). Throws ConfigError naming `where` when
/// num_inference_steps is not in [1, num_train_timesteps].
std::vector<int64_t> integer_timesteps(const NoiseScheduleOptions& options, int64_t num_inference_steps,
                                       const std::string& where);

/// The float32 inference timesteps, descending, as the Euler-family set_timesteps makes them.
std::vector<float> float_timesteps(const NoiseScheduleOptions& options, int64_t num_inference_steps,
                                   const std::string& where);

/// numpy.interp(x, arange(len(fp)), fp) in float64.
double interp_on_index_grid(double x, const std::vector<float>& fp);

/// Karras et al. (2022) sigmas: (max^(1/7) + ramp * (min^(1/7) - max^(1/7)))^7, ramp =
/// linspace(0, 1, n), in float64 as diffusers' _convert_to_karras.
std::vector<double> karras_sigmas(double sigma_min, double sigma_max, int64_t n);

/// diffusers' _sigma_to_t: the fractional training timestep of `sigma` by linear interpolation of
/// log sigma over `log_sigmas` (float32 log of the training sigmas, ascending in t).
double sigma_to_t(double sigma, const std::vector<float>& log_sigmas);

/// Training sigmas sqrt((1 - abar) / abar) as float32, ascending in t (a float32 tensor's values).
std::vector<float> training_sigmas(const torch::Tensor& alphas_cumprod);

/// The position of `timestep` in `schedule` (1-D), as diffusers' index_for_timestep: the second
/// match when it occurs more than once (so image-to-image starting mid-schedule does not skip a
/// sigma). Returns -1 when absent.
int64_t index_for_timestep(const torch::Tensor& schedule, const torch::Tensor& timestep);

/// A float64 value of a 0-dim or one-element tensor.
double scalar_of(const torch::Tensor& value);

/// Noise as diffusers' randn_tensor(shape, generator, device, dtype): drawn with torch::randn on
/// the generator's device (CPU when `generator` is null: the default CPU generator), then moved to
/// `like`'s device. Same seed, shape and call order as Python give the same values.
torch::Tensor randn_like_diffusers(const torch::Tensor& like, at::Generator* generator,
                                   torch::ScalarType dtype);

/// "epsilon" | "v_prediction" | "sample".
std::string prediction_type_name(NoiseScheduleOptions::PredictionType type);

}  // namespace noise
}  // namespace sdtrain
