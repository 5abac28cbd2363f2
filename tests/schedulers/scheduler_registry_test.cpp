// The scheduler registry lists every noise scheduler plugin and each builds from its defaults
// (SD v1.4's scheduler_config.json) and samples a small loop without error.
#include <set>
#include <string>

#include <ATen/CPUGeneratorImpl.h>
#include <gtest/gtest.h>

#include "framework/registry/registry.h"
#include "plugins/schedulers/noise/ddim_scheduler.h"
#include "plugins/schedulers/noise/schedulers.pb.h"
#include "sdtrain/errors.h"
#include "sdtrain/noise_scheduler.h"

namespace sdtrain {
namespace {

const std::set<std::string> kNoisePlugins = {"ddpm", "ddim", "pndm", "euler", "euler_ancestral", "dpmpp_2m"};

TEST(SchedulerRegistry, ListsEveryNoiseScheduler) {
  std::set<std::string> names;
  for (const PluginEntry& entry : Registry<NoiseScheduler>::instance().entries()) {
    names.insert(entry.name);
    EXPECT_FALSE(entry.description.empty()) << entry.name;
    EXPECT_NE(entry.options_type, nullptr) << entry.name;
  }
  for (const std::string& name : kNoisePlugins) EXPECT_EQ(names.count(name), 1u) << name;
}

TEST(SchedulerRegistry, DefaultsAreStableDiffusionV14) {
  const DdimSchedulerOptions ddim;
  EXPECT_EQ(ddim.schedule().num_train_timesteps(), 1000);
  EXPECT_DOUBLE_EQ(ddim.schedule().beta_start(), 0.00085);
  EXPECT_DOUBLE_EQ(ddim.schedule().beta_end(), 0.012);
  EXPECT_EQ(ddim.schedule().beta_schedule(), NoiseScheduleOptions::SCALED_LINEAR);
  EXPECT_EQ(ddim.schedule().prediction_type(), NoiseScheduleOptions::EPSILON);
  EXPECT_EQ(ddim.schedule().timestep_spacing(), NoiseScheduleOptions::LEADING);
  EXPECT_EQ(ddim.schedule().steps_offset(), 1);
  EXPECT_FALSE(ddim.clip_sample());
  EXPECT_FALSE(ddim.set_alpha_to_one());
  EXPECT_TRUE(PndmSchedulerOptions().skip_prk_steps());
  EXPECT_EQ(DpmSolverMultistepSchedulerOptions().solver_order(), 2);
}

TEST(SchedulerRegistry, EachBuildsFromDefaultsAndSamples) {
  for (const std::string& name : kNoisePlugins) {
    PluginSpec spec;
    spec.set_type(name);
    std::unique_ptr<NoiseScheduler> scheduler = Registry<NoiseScheduler>::instance().create(spec, PluginContext{}, "sampler");
    ASSERT_NE(scheduler, nullptr) << name;
    scheduler->set_timesteps(5);
    at::Generator generator = at::make_generator<at::CPUGeneratorImpl>(1);
    torch::Tensor x = torch::randn({1, 4, 4, 4}, generator) * scheduler->init_noise_sigma();
    const torch::Tensor timesteps = scheduler->timesteps();
    for (int64_t i = 0; i < timesteps.numel(); ++i) {
      const torch::Tensor eps = 0.5 * scheduler->scale_model_input(x, timesteps[i]);
      x = scheduler->step(eps, timesteps[i], x, &generator);
    }
    EXPECT_TRUE(torch::isfinite(x).all().item<bool>()) << name;
    EXPECT_EQ(scheduler->alphas_cumprod().numel(), 1000) << name;
  }
}

TEST(SchedulerRegistry, BadOptionsNameTheField) {
  PluginSpec spec;
  spec.set_type("dpmpp_2m");
  DpmSolverMultistepSchedulerOptions options;
  options.set_solver_order(4);
  spec.mutable_options()->PackFrom(options);
  try {
    Registry<NoiseScheduler>::instance().create(spec, PluginContext{}, "sampler");
    FAIL() << "solver_order 4 accepted";
  } catch (const ConfigError& error) {
    EXPECT_NE(std::string(error.what()).find("solver_order"), std::string::npos) << error.what();
  }
}

// diffusers' PNDMScheduler has no zero-terminal-SNR option, so neither has pndm: refused by name.
TEST(SchedulerRegistry, PndmRefusesZeroTerminalSnr) {
  PluginSpec spec;
  spec.set_type("pndm");
  PndmSchedulerOptions options;
  options.mutable_schedule()->set_rescale_betas_zero_snr(true);
  spec.mutable_options()->PackFrom(options);
  try {
    Registry<NoiseScheduler>::instance().create(spec, PluginContext{}, "sampler");
    FAIL() << "pndm accepted rescale_betas_zero_snr";
  } catch (const ConfigError& error) {
    EXPECT_NE(std::string(error.what()).find("schedule.rescale_betas_zero_snr: pndm does not support it"),
              std::string::npos)
        << error.what();
  }
}

}  // namespace
}  // namespace sdtrain
