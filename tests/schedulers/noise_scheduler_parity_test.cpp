// Every noise scheduler plugin against diffusers: timesteps, init_noise_sigma, every
// scale_model_input / step output of a full sampling loop (fake deterministic model; stochastic
// samplers with a seeded CPU generator, same seed as Python) and add_noise.
#include <algorithm>
#include <cmath>
#include <iostream>
#include <memory>
#include <string>

#include <google/protobuf/text_format.h>
#include <ATen/CPUGeneratorImpl.h>
#include <gtest/gtest.h>

#include "framework/registry/registry.h"
#include "sdtrain/errors.h"
#include "sdtrain/noise_scheduler.h"
#include "tests/schedulers/fixture_reader.h"

namespace sdtrain {
namespace {

using test::FixtureDict;
using test::max_abs_diff;

// Agreement required: 1e-6 absolute on values of magnitude <= 1, 1e-6 relative above (float32
// resolution: latents scaled by sigma_max ~ 14.6 have ulps of ~1e-6).
constexpr double kTolerance = 1e-6;

double tolerance_for(const torch::Tensor& reference) {
  const double scale = reference.numel() ? reference.abs().max().item<double>() : 0.0;
  return kTolerance * std::max(1.0, scale);
}

std::unique_ptr<NoiseScheduler> build(const std::string& plugin, const std::string& options_text) {
  const PluginEntry* entry = Registry<NoiseScheduler>::instance().find(plugin);
  if (entry == nullptr) throw std::runtime_error("no scheduler plugin " + plugin);
  std::unique_ptr<google::protobuf::Message> options(
      google::protobuf::MessageFactory::generated_factory()->GetPrototype(entry->options_type)->New());
  if (!google::protobuf::TextFormat::ParseFromString(options_text, options.get())) {
    throw std::runtime_error("bad options text for " + plugin + ": " + options_text);
  }
  PluginSpec spec;
  spec.set_type(plugin);
  spec.mutable_options()->PackFrom(*options);
  return Registry<NoiseScheduler>::instance().create(spec, PluginContext{}, "test");
}

torch::Tensor fake_model(const torch::Tensor& sample, const torch::Tensor& t, const torch::Tensor& fixed) {
  return 0.1 * sample + (0.05 * std::sin(t.item<double>())) * fixed;
}

/// Largest |C++ - diffusers| seen over step outputs (reported, so drift is visible).
double g_worst_step_error = 0;

/// Runs one fixture case; returns the number of compared step outputs.
int64_t check_case(const std::string& name) {
  SCOPED_TRACE("case " + name);
  const FixtureDict ref(test::scheduler_fixture_dir() + "/" + name + ".pt");
  const std::string options = ref.str("options");
  SCOPED_TRACE("options { " + options + " }");
  std::unique_ptr<NoiseScheduler> scheduler = build(ref.str("plugin"), options);
  EXPECT_EQ(scheduler->num_train_timesteps(), 1000);
  scheduler->set_timesteps(ref.integer("steps"));

  const torch::Tensor timesteps = scheduler->timesteps();
  const torch::Tensor ref_timesteps = ref.tensor("timesteps");
  EXPECT_EQ(timesteps.scalar_type(), ref_timesteps.scalar_type());
  EXPECT_EQ(timesteps.sizes(), ref_timesteps.sizes());
  if (timesteps.sizes() != ref_timesteps.sizes()) return 0;
  EXPECT_LE(max_abs_diff(timesteps, ref_timesteps), tolerance_for(ref_timesteps))
      << "timesteps " << timesteps << " vs " << ref_timesteps;
  const double sigma = ref.real("init_noise_sigma");
  EXPECT_NEAR(scheduler->init_noise_sigma(), sigma, kTolerance * std::max(1.0, sigma));

  const int64_t seed = ref.integer("seed");
  at::Generator generator = at::make_generator<at::CPUGeneratorImpl>(seed >= 0 ? seed : 0);
  const torch::Tensor fixed = ref.tensor("fixed");
  const torch::Tensor ref_scaled = ref.tensor("scaled");
  const torch::Tensor ref_prev = ref.tensor("prev");
  torch::Tensor latents = ref.tensor("init") * scheduler->init_noise_sigma();
  for (int64_t i = 0; i < timesteps.numel(); ++i) {
    const torch::Tensor t = timesteps[i];
    const torch::Tensor model_in = scheduler->scale_model_input(latents, t);
    const torch::Tensor out = fake_model(model_in, t, fixed);
    latents = scheduler->step(out, t, latents, seed >= 0 ? &generator : nullptr);
    const double scaled_error = max_abs_diff(model_in, ref_scaled[i]);
    const double prev_error = max_abs_diff(latents, ref_prev[i]);
    g_worst_step_error = std::max(g_worst_step_error, std::max(prev_error, scaled_error));
    EXPECT_LE(scaled_error, tolerance_for(ref_scaled[i])) << "scale_model_input at step " << i;
    EXPECT_LE(prev_error, tolerance_for(ref_prev[i])) << "step output at step " << i << " (t = " << t.item<double>() << ")";
    if (prev_error > tolerance_for(ref_prev[i])) break;  // later steps only repeat the failure
  }
  const torch::Tensor noisy = scheduler->add_noise(ref.tensor("add_noise_x"), ref.tensor("add_noise_noise"),
                                                   ref.tensor("add_noise_t"));
  EXPECT_LE(max_abs_diff(noisy, ref.tensor("add_noise_out")), tolerance_for(ref.tensor("add_noise_out")))
      << "add_noise";
  return timesteps.numel();
}

void check_plugin(const std::string& plugin) {
  const c10::IValue index = test::load_pickle(test::scheduler_fixture_dir() + "/index.pt");
  int cases = 0;
  g_worst_step_error = 0;
  for (const c10::IValue& name : index.toListRef()) {
    const std::string case_name = name.toStringRef();
    const FixtureDict ref(test::scheduler_fixture_dir() + "/" + case_name + ".pt");
    if (ref.str("plugin") != plugin) continue;
    EXPECT_GT(check_case(case_name), 0);
    ++cases;
  }
  EXPECT_GE(cases, 9) << "expected a case per spacing and step count for " << plugin;
  std::cout << plugin << ": " << cases << " cases, largest step difference vs diffusers " << g_worst_step_error
            << "\n";
}

TEST(NoiseSchedulerParity, Ddpm) { check_plugin("ddpm"); }
TEST(NoiseSchedulerParity, Ddim) { check_plugin("ddim"); }
TEST(NoiseSchedulerParity, Pndm) { check_plugin("pndm"); }
TEST(NoiseSchedulerParity, Euler) { check_plugin("euler"); }
TEST(NoiseSchedulerParity, EulerAncestral) { check_plugin("euler_ancestral"); }
TEST(NoiseSchedulerParity, DpmSolverMultistep) { check_plugin("dpmpp_2m"); }

TEST(NoiseSchedulerParity, StepBeforeSetTimestepsFails) {
  for (const char* plugin : {"ddim", "pndm", "dpmpp_2m"}) {
    std::unique_ptr<NoiseScheduler> scheduler = build(plugin, "");
    const torch::Tensor x = torch::zeros({1, 4, 2, 2});
    EXPECT_THROW(scheduler->step(x, torch::tensor(901), x, nullptr), c10::Error) << plugin;
  }
}

TEST(NoiseSchedulerParity, TooManyInferenceStepsIsAConfigError) {
  for (const char* plugin : {"ddpm", "ddim", "pndm", "euler", "euler_ancestral", "dpmpp_2m"}) {
    std::unique_ptr<NoiseScheduler> scheduler = build(plugin, "");
    try {
      scheduler->set_timesteps(1001);
      ADD_FAILURE() << plugin << " accepted 1001 steps";
    } catch (const ConfigError& error) {
      EXPECT_NE(std::string(error.what()).find("num_inference_steps"), std::string::npos) << error.what();
    }
  }
}

}  // namespace
}  // namespace sdtrain
