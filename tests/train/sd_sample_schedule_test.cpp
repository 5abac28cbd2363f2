// Validation sampling uses the model's training noise schedule: a v-prediction model draws its
// grids as v-prediction (the sampler's own defaults are SD v1's epsilon prediction).
#include <gtest/gtest.h>

#include <memory>

#include "framework/registry/registry.h"
#include "plugins/schedulers/noise/schedulers.pb.h"
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
