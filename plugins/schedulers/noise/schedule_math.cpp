#include "plugins/schedulers/noise/schedule_math.h"

#include <algorithm>
#include <cfenv>
#include <cmath>
#include <optional>

#include "sdtrain/errors.h"

namespace sdtrain {
namespace noise {
namespace {

/// diffusers' betas_for_alpha_bar with the cosine alpha_bar (Glide's squaredcos_cap_v2).
torch::Tensor cosine_betas(int64_t num_timesteps) {
  const double pi = std::acos(-1.0);
  auto alpha_bar = [pi](double t) {
    const double c = std::cos((t + 0.008) / 1.008 * pi / 2);
    return c * c;
  };
  std::vector<float> betas(static_cast<size_t>(num_timesteps));
  for (int64_t i = 0; i < num_timesteps; ++i) {
    const double t1 = static_cast<double>(i) / static_cast<double>(num_timesteps);
    const double t2 = static_cast<double>(i + 1) / static_cast<double>(num_timesteps);
    betas[static_cast<size_t>(i)] = static_cast<float>(std::min(1 - alpha_bar(t2) / alpha_bar(t1), 0.999));
  }
  return torch::tensor(betas, torch::kFloat32);
}

std::string prefix(const std::string& where) { return where.empty() ? std::string() : where + "."; }

void check_steps(const NoiseScheduleOptions& options, int64_t n, const std::string& where) {
  if (n < 1 || n > options.num_train_timesteps()) {
    throw ConfigError(where + ": num_inference_steps must be in [1, num_train_timesteps = " +
                      std::to_string(options.num_train_timesteps()) + "], got " + std::to_string(n));
  }
}

/// diffusers' rescale_zero_terminal_snr, float32 and in its order of operations: sqrt(abar)
/// shifted so the last is 0 and scaled so the first keeps its value, then back to betas.
torch::Tensor rescale_zero_terminal_snr(const torch::Tensor& betas) {
  const torch::Tensor alphas_cumprod = torch::cumprod(1.0 - betas, 0);
  torch::Tensor alphas_bar_sqrt = alphas_cumprod.sqrt();
  const torch::Tensor first = alphas_bar_sqrt[0].clone();
  const torch::Tensor last = alphas_bar_sqrt[-1].clone();
  alphas_bar_sqrt -= last;
  alphas_bar_sqrt *= first / (first - last);
  const torch::Tensor alphas_bar = alphas_bar_sqrt.pow(2);
  const int64_t n = alphas_bar.size(0);
  const torch::Tensor alphas =
      torch::cat({alphas_bar.narrow(0, 0, 1), alphas_bar.narrow(0, 1, n - 1) / alphas_bar.narrow(0, 0, n - 1)});
  return 1 - alphas;
}

torch::Tensor schedule_betas(const NoiseScheduleOptions& options, const std::string& where) {
  const int64_t t = options.num_train_timesteps();
  if (t < 2) throw ConfigError(prefix(where) + "schedule.num_train_timesteps must be at least 2, got " + std::to_string(t));
  if (options.beta_start() <= 0 || options.beta_end() <= 0 || options.beta_end() >= 1) {
    throw ConfigError(prefix(where) + "schedule: beta_start and beta_end must lie in (0, 1)");
  }
  const auto f32 = torch::TensorOptions().dtype(torch::kFloat32);
  switch (options.beta_schedule()) {
    case NoiseScheduleOptions::LINEAR:
      return torch::linspace(options.beta_start(), options.beta_end(), t, f32);
    case NoiseScheduleOptions::SCALED_LINEAR:
      return torch::linspace(std::pow(options.beta_start(), 0.5), std::pow(options.beta_end(), 0.5), t, f32).pow(2);
    case NoiseScheduleOptions::SQUAREDCOS_CAP_V2:
      return cosine_betas(t);
  }
  throw ConfigError(prefix(where) + "schedule.beta_schedule: unknown value");
}

}  // namespace

torch::Tensor make_betas(const NoiseScheduleOptions& options, const std::string& where) {
  const torch::Tensor betas = schedule_betas(options, where);
  return options.rescale_betas_zero_snr() ? rescale_zero_terminal_snr(betas) : betas;
}

std::vector<double> numpy_linspace(double start, double stop, int64_t num) {
  std::vector<double> out(static_cast<size_t>(std::max<int64_t>(num, 0)));
  if (num == 1) out[0] = start;
  if (num < 2) return out;
  const double div = static_cast<double>(num - 1);
  const double delta = stop - start;
  const double step = delta / div;
  for (int64_t i = 0; i < num; ++i) {
    const double y = step == 0 ? static_cast<double>(i) / div * delta : static_cast<double>(i) * step;
    out[static_cast<size_t>(i)] = y + start;
  }
  out.back() = stop;
  return out;
}

std::vector<double> numpy_arange(double start, double stop, double step) {
  const double length = std::ceil((stop - start) / step);
  std::vector<double> out;
  if (!(length > 0)) return out;
  out.resize(static_cast<size_t>(length));
  out[0] = start;
  if (out.size() > 1) out[1] = start + step;
  const double delta = (start + step) - start;
  for (size_t i = 2; i < out.size(); ++i) out[i] = start + static_cast<double>(i) * delta;
  return out;
}

double round_half_even(double value) {
  const int mode = std::fegetround();
  std::fesetround(FE_TONEAREST);
  const double rounded = std::nearbyint(value);
  std::fesetround(mode);
  return rounded;
}

std::vector<int64_t> integer_timesteps(const NoiseScheduleOptions& options, int64_t n, const std::string& where) {
  check_steps(options, n, where);
  const int64_t t = options.num_train_timesteps();
  std::vector<int64_t> out;
  switch (options.timestep_spacing()) {
    case NoiseScheduleOptions::LINSPACE:
      for (double v : numpy_linspace(0, static_cast<double>(t - 1), n)) out.push_back(static_cast<int64_t>(round_half_even(v)));
      std::reverse(out.begin(), out.end());
      return out;
    case NoiseScheduleOptions::LEADING: {
      const int64_t ratio = t / n;
      for (int64_t i = n - 1; i >= 0; --i) out.push_back(i * ratio + options.steps_offset());
      return out;
    }
    case NoiseScheduleOptions::TRAILING: {
      const double ratio = static_cast<double>(t) / static_cast<double>(n);
      for (double v : numpy_arange(static_cast<double>(t), 0, -ratio)) out.push_back(static_cast<int64_t>(round_half_even(v)) - 1);
      return out;
    }
  }
  throw ConfigError(prefix(where) + "schedule.timestep_spacing: unknown value");
}

std::vector<float> float_timesteps(const NoiseScheduleOptions& options, int64_t n, const std::string& where) {
  check_steps(options, n, where);
  const int64_t t = options.num_train_timesteps();
  std::vector<float> out;
  switch (options.timestep_spacing()) {
    case NoiseScheduleOptions::LINSPACE:
      for (double v : numpy_linspace(0, static_cast<double>(t - 1), n)) out.push_back(static_cast<float>(v));
      std::reverse(out.begin(), out.end());
      return out;
    case NoiseScheduleOptions::LEADING: {
      const int64_t ratio = t / n;
      for (int64_t i = n - 1; i >= 0; --i) {
        out.push_back(static_cast<float>(i * ratio) + static_cast<float>(options.steps_offset()));
      }
      return out;
    }
    case NoiseScheduleOptions::TRAILING: {
      const double ratio = static_cast<double>(t) / static_cast<double>(n);
      for (double v : numpy_arange(static_cast<double>(t), 0, -ratio)) {
        out.push_back(static_cast<float>(round_half_even(v)) - 1.0f);
      }
      return out;
    }
  }
  throw ConfigError(prefix(where) + "schedule.timestep_spacing: unknown value");
}

double interp_on_index_grid(double x, const std::vector<float>& fp) {
  const int64_t n = static_cast<int64_t>(fp.size());
  TORCH_CHECK(n > 0, "interp_on_index_grid: empty table");
  if (x > static_cast<double>(n - 1)) return fp.back();
  if (x < 0) return fp.front();
  // numpy's binary search finds j with xp[j] <= x < xp[j + 1]; on an index grid that is floor(x).
  const int64_t j = static_cast<int64_t>(std::floor(x));
  if (j >= n - 1) return fp[static_cast<size_t>(n - 1)];
  if (static_cast<double>(j) == x) return fp[static_cast<size_t>(j)];
  const double lo = fp[static_cast<size_t>(j)];
  const double hi = fp[static_cast<size_t>(j + 1)];
  const double slope = (hi - lo) / (static_cast<double>(j + 1) - static_cast<double>(j));
  return slope * (x - static_cast<double>(j)) + lo;
}

std::vector<double> karras_sigmas(double sigma_min, double sigma_max, int64_t n) {
  const double rho = 7.0;
  const double min_inv_rho = std::pow(sigma_min, 1 / rho);
  const double max_inv_rho = std::pow(sigma_max, 1 / rho);
  std::vector<double> out;
  for (double ramp : numpy_linspace(0, 1, n)) out.push_back(std::pow(max_inv_rho + ramp * (min_inv_rho - max_inv_rho), rho));
  return out;
}

double sigma_to_t(double sigma, const std::vector<float>& log_sigmas) {
  const double log_sigma = std::log(std::max(sigma, 1e-10));
  const int64_t n = static_cast<int64_t>(log_sigmas.size());
  // argmax of cumsum(dists >= 0): the last index whose log sigma is <= log_sigma (0 if none).
  int64_t count = 0, best = 0, best_index = 0;
  for (int64_t i = 0; i < n; ++i) {
    count += (log_sigma - static_cast<double>(log_sigmas[static_cast<size_t>(i)])) >= 0;
    if (count > best) {
      best = count;
      best_index = i;
    }
  }
  const int64_t low_idx = std::min(best_index, n - 2);
  const int64_t high_idx = low_idx + 1;
  const float low = log_sigmas[static_cast<size_t>(low_idx)];
  const float high = log_sigmas[static_cast<size_t>(high_idx)];
  double w = (static_cast<double>(low) - log_sigma) / static_cast<double>(low - high);
  w = std::min(std::max(w, 0.0), 1.0);
  return (1 - w) * static_cast<double>(low_idx) + w * static_cast<double>(high_idx);
}

std::vector<float> training_sigmas(const torch::Tensor& alphas_cumprod) {
  const torch::Tensor sigmas = ((1 - alphas_cumprod) / alphas_cumprod).pow(0.5).contiguous();
  return std::vector<float>(sigmas.data_ptr<float>(), sigmas.data_ptr<float>() + sigmas.numel());
}

int64_t index_for_timestep(const torch::Tensor& schedule, const torch::Tensor& timestep) {
  const double t = scalar_of(timestep);
  const torch::Tensor values = schedule.to(torch::kFloat64).contiguous();
  std::vector<int64_t> matches;
  for (int64_t i = 0; i < values.numel(); ++i) {
    if (values.data_ptr<double>()[i] == t) matches.push_back(i);
  }
  if (matches.empty()) return -1;
  return matches.size() > 1 ? matches[1] : matches[0];
}

double scalar_of(const torch::Tensor& value) {
  TORCH_CHECK(value.numel() == 1, "expected a single timestep, got a tensor of ", value.numel(), " elements");
  return value.item<double>();
}

torch::Tensor randn_like_diffusers(const torch::Tensor& like, at::Generator* generator, torch::ScalarType dtype) {
  std::optional<at::Generator> gen;
  torch::Device device = torch::kCPU;
  if (generator != nullptr && generator->defined()) {
    gen = *generator;
    device = generator->device();
  }
  torch::Tensor noise = torch::randn(like.sizes(), gen, torch::TensorOptions().dtype(dtype).device(device));
  return noise.to(like.device());
}

std::string prediction_type_name(NoiseScheduleOptions::PredictionType type) {
  switch (type) {
    case NoiseScheduleOptions::EPSILON:
      return "epsilon";
    case NoiseScheduleOptions::V_PREDICTION:
      return "v_prediction";
    case NoiseScheduleOptions::SAMPLE:
      return "sample";
  }
  return "epsilon";
}

}  // namespace noise
}  // namespace sdtrain
