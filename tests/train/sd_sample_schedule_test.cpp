// Validation sampling uses the model's training noise schedule: a v-prediction model draws its
// grids as v-prediction (the sampler's own defaults are SD v1's epsilon prediction).
#include <gtest/gtest.h>

#include <memory>

#include "framework/registry/registry.h"
#include "plugins/schedulers/noise/schedulers.pb.h"
#include "sdtrain/errors.h"
#include "tests/train/tiny_sd_model.h"

namespace sdtrain {
namespace {

using testing::make_tiny_model;

SampleRequest small_request(const char* sampler) {
  SampleRequest request;
  request.prompts = {"a man in armor"};
  request.height = request.width = 32;
  request.steps = 3;
  request.sampler = sampler;
  request.seed = 5;
  return request;
}

/// txt2img on the model's networks with `sampler` built from explicit options.
std::vector<Image> draw_with(const StableDiffusionModel& model, const SampleRequest& request,
                             const google::protobuf::Message& options) {
  PluginSpec spec;
  spec.set_type(request.sampler);
  spec.mutable_options()->PackFrom(options);
  auto sampler = Registry<NoiseScheduler>::instance().create(spec, PluginContext{}, "sampler");
  return txt2img(model.networks(), *sampler, request, torch::kCPU);
}

TEST(SdSampleSchedule, AVPredictionModelSamplesWithItsTrainingSchedule) {
  const auto model = make_tiny_model(
      "noise_scheduler { type: \"ddpm\" options { [type.googleapis.com/sdtrain.DdpmSchedulerOptions] { schedule { "
      "prediction_type: V_PREDICTION beta_schedule: LINEAR beta_end: 0.02 } } } }");
  for (const char* name : {"ddim", "euler"}) {
    SCOPED_TRACE(name);
    const SampleRequest request = small_request(name);
    const std::vector<Image> drawn = model->sample(request);
    std::unique_ptr<google::protobuf::Message> v_options, eps_options;
    if (std::string(name) == "ddim") {
      v_options = std::make_unique<DdimSchedulerOptions>();
      eps_options = std::make_unique<DdimSchedulerOptions>();
    } else {
      v_options = std::make_unique<EulerSchedulerOptions>();
      eps_options = std::make_unique<EulerSchedulerOptions>();
    }
    auto* schedule = static_cast<NoiseScheduleOptions*>(v_options->GetReflection()->MutableMessage(
        v_options.get(), v_options->GetDescriptor()->FindFieldByName("schedule")));
    schedule->set_prediction_type(NoiseScheduleOptions::V_PREDICTION);
    schedule->set_beta_schedule(NoiseScheduleOptions::LINEAR);
    schedule->set_beta_end(0.02);
    const std::vector<Image> v = draw_with(*model, request, *v_options);
    const std::vector<Image> eps = draw_with(*model, request, *eps_options);
    ASSERT_EQ(drawn.size(), 1u);
    EXPECT_EQ(drawn[0].pixels, v[0].pixels);
    EXPECT_NE(drawn[0].pixels, eps[0].pixels);
  }
}

// SD 2.x trained at zero terminal SNR (rescaled betas, v-prediction, trailing spacing, as
// "Common Diffusion Noise Schedules and Sample Steps are Flawed" trains it): its grids are drawn
// under that schedule, and a sampler that cannot take it is refused by the check the image
// logger makes at fit start (a request without prompts), not at the first grid.
TEST(SdSampleSchedule, AZeroTerminalSnrModelSamplesUnderItsRescaledSchedule) {
  const auto model = make_tiny_model(
      "noise_scheduler { type: \"ddpm\" options { [type.googleapis.com/sdtrain.DdpmSchedulerOptions] { schedule { "
      "prediction_type: V_PREDICTION rescale_betas_zero_snr: true timestep_spacing: TRAILING } } } }");
  const SampleRequest request = small_request("ddim");
  const std::vector<Image> drawn = model->sample(request);
  DdimSchedulerOptions rescaled, plain;
  rescaled.mutable_schedule()->set_prediction_type(NoiseScheduleOptions::V_PREDICTION);
  rescaled.mutable_schedule()->set_rescale_betas_zero_snr(true);
  rescaled.mutable_schedule()->set_timestep_spacing(NoiseScheduleOptions::TRAILING);
  plain.mutable_schedule()->set_prediction_type(NoiseScheduleOptions::V_PREDICTION);
  ASSERT_EQ(drawn.size(), 1u);
  EXPECT_EQ(drawn[0].pixels, draw_with(*model, request, rescaled)[0].pixels);
  EXPECT_NE(drawn[0].pixels, draw_with(*model, request, plain)[0].pixels);

  SampleRequest check = small_request("pndm");
  check.prompts.clear();
  try {
    model->sample(check);
    FAIL() << "pndm accepted a zero-terminal-SNR schedule";
  } catch (const ConfigError& error) {
    EXPECT_NE(std::string(error.what()).find("rescale_betas_zero_snr: pndm does not support it"), std::string::npos)
        << error.what();
  }
  check.sampler = "euler";
  EXPECT_TRUE(model->sample(check).empty());
}

TEST(SdSampleSchedule, TheRequestsOwnOptionsStillApply) {
  // eta from the request (the image logger's) on top of the training schedule.
  const auto model = make_tiny_model(
      "noise_scheduler { type: \"ddpm\" options { [type.googleapis.com/sdtrain.DdpmSchedulerOptions] { schedule { "
      "prediction_type: V_PREDICTION } } } }");
  SampleRequest request = small_request("ddim");
  auto eta = std::make_shared<DdimSchedulerOptions>();
  eta->set_eta(1.0);
  request.sampler_options = eta;
  const std::vector<Image> drawn = model->sample(request);
  DdimSchedulerOptions expected;
  expected.set_eta(1.0);
  expected.mutable_schedule()->set_prediction_type(NoiseScheduleOptions::V_PREDICTION);
  EXPECT_EQ(drawn[0].pixels, draw_with(*model, request, expected)[0].pixels);
  // Options of another sampler's type are refused, naming both types.
  request.sampler = "euler";
  EXPECT_THROW(model->sample(request), ConfigError);
}

}  // namespace
}  // namespace sdtrain
