// Training-side helpers against diffusers: beta schedules, add_noise, get_velocity, compute_snr,
// min-SNR weights (train_text_to_image.py), offset noise and classifier-free guidance.
#include <memory>
#include <string>

#include <ATen/CPUGeneratorImpl.h>
#include <gtest/gtest.h>

#include "plugins/schedulers/noise/ddpm_scheduler.h"
#include "plugins/schedulers/noise/guidance.h"
#include "plugins/schedulers/noise/training_losses.h"
#include "sdtrain/errors.h"
#include "sdtrain/noise_scheduler.h"
#include "tests/schedulers/fixture_reader.h"

namespace sdtrain {
namespace {

using noise::DdpmScheduler;
using test::max_abs_diff;

class TrainingLossesTest : public ::testing::Test {
 protected:
  TrainingLossesTest() : ref_(test::scheduler_fixture_dir() + "/training.pt") {}
  test::FixtureDict ref_;
  DdpmScheduler sd_{DdpmSchedulerOptions()};
};

TEST_F(TrainingLossesTest, BetaSchedulesMatchDiffusersExactly) {
  const std::pair<const char*, NoiseScheduleOptions::BetaSchedule> schedules[] = {
      {"scaled_linear", NoiseScheduleOptions::SCALED_LINEAR},
      {"linear", NoiseScheduleOptions::LINEAR},
      {"squaredcos_cap_v2", NoiseScheduleOptions::SQUAREDCOS_CAP_V2}};
  for (const auto& [name, schedule] : schedules) {
    DdpmSchedulerOptions options;
    options.mutable_schedule()->set_beta_schedule(schedule);
    const DdpmScheduler scheduler(options);
    EXPECT_EQ(max_abs_diff(scheduler.alphas_cumprod(), ref_.tensor(std::string("alphas_cumprod_") + name)), 0.0)
        << name;
  }
}

TEST_F(TrainingLossesTest, AddNoiseAndVelocity) {
  const torch::Tensor x = ref_.tensor("x"), n = ref_.tensor("noise"), t = ref_.tensor("timesteps");
  EXPECT_LE(max_abs_diff(sd_.add_noise(x, n, t), ref_.tensor("noisy")), 1e-6);
  EXPECT_LE(max_abs_diff(sd_.get_velocity(x, n, t), ref_.tensor("velocity")), 1e-6);
  EXPECT_EQ(sd_.prediction_type(), "epsilon");
  EXPECT_LE(max_abs_diff(noise::training_target(sd_.prediction_type(), sd_.alphas_cumprod(), x, n, t), n), 0.0);
  DdpmSchedulerOptions v_options;
  v_options.mutable_schedule()->set_prediction_type(NoiseScheduleOptions::V_PREDICTION);
  const DdpmScheduler v_scheduler(v_options);
  EXPECT_EQ(v_scheduler.prediction_type(), "v_prediction");
  EXPECT_LE(max_abs_diff(noise::training_target(v_scheduler.prediction_type(), v_scheduler.alphas_cumprod(), x, n, t),
                         ref_.tensor("velocity")),
            1e-6);
}

TEST_F(TrainingLossesTest, SnrAndMinSnrWeights) {
  const torch::Tensor t = ref_.tensor("timesteps");
  const torch::Tensor snr = noise::compute_snr(sd_.alphas_cumprod(), t);
  EXPECT_LE(max_abs_diff(snr, ref_.tensor("snr")), 1e-6 * ref_.tensor("snr").abs().max().item<double>());
  for (int gamma : {1, 5}) {
    for (const char* type : {"epsilon", "v_prediction"}) {
      const std::string key = "min_snr_" + std::to_string(gamma) + "_" + type;
      EXPECT_LE(max_abs_diff(noise::min_snr_loss_weights(snr, gamma, type), ref_.tensor(key)), 1e-6) << key;
    }
  }
  EXPECT_THROW(noise::min_snr_loss_weights(snr, 0.0, "epsilon"), ConfigError);
}

TEST_F(TrainingLossesTest, OffsetNoiseDrawsLikeTheTrainingScript) {
  at::Generator generator = at::make_generator<at::CPUGeneratorImpl>(5);
  const torch::Tensor latents = torch::zeros({3, 4, 8, 8});
  EXPECT_LE(max_abs_diff(noise::offset_noise(latents, 0.1, &generator), ref_.tensor("offset_noise_0.1_seed5")), 1e-6);
  at::Generator plain = at::make_generator<at::CPUGeneratorImpl>(5);
  at::Generator again = at::make_generator<at::CPUGeneratorImpl>(5);
  EXPECT_TRUE(noise::offset_noise(latents, 0.0, &plain).equal(torch::randn({3, 4, 8, 8}, again)));
}

TEST_F(TrainingLossesTest, ClassifierFreeGuidanceTakesUncondFirst) {
  EXPECT_LE(max_abs_diff(noise::apply_cfg(ref_.tensor("cfg_input"), 7.5), ref_.tensor("cfg_7.5")), 1e-6);
  EXPECT_THROW(noise::apply_cfg(torch::zeros({3, 4}), 7.5), c10::Error);
  const torch::Tensor pair = torch::stack({torch::full({2}, 1.0), torch::full({2}, 3.0)});
  EXPECT_TRUE(noise::apply_cfg(pair, 1.0).equal(torch::full({1, 2}, 3.0)));
}

TEST(TrainingLosses, CpuRandnMatchesPythonForTheSameSeed) {
  // The fixture's offset-noise reference starts with randn((3, 4, 8, 8)) from seed 5, so equal
  // first draws prove LibTorch's CPU generator equals Python's for one seed; the sampling cases
  // cover many more.
  const test::FixtureDict ref(test::scheduler_fixture_dir() + "/training.pt");
  at::Generator generator = at::make_generator<at::CPUGeneratorImpl>(5);
  const torch::Tensor first = torch::randn({3, 4, 8, 8}, generator);
  const torch::Tensor offset = torch::randn({3, 4, 1, 1}, generator);
  EXPECT_TRUE((first + 0.1 * offset).equal(ref.tensor("offset_noise_0.1_seed5")));
}

}  // namespace
}  // namespace sdtrain
