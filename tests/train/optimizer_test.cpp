// FlatAdamW against torch.optim.AdamW; the EMA against LitEma's formula; LR schedules.
#include <gtest/gtest.h>

#include <fstream>
#include <iterator>

#include "framework/train/adamw.h"
#include "framework/train/ema.h"
#include "framework/train/flat_parameters.h"
#include "plugins/schedulers/lr/lr_schedules.h"
#include "plugins/schedulers/lr/lr_schedules.pb.h"
#include "sdtrain/errors.h"
#include "tests/common/test_env.h"

namespace sdtrain {
namespace {

c10::Dict<c10::IValue, c10::IValue> load_reference(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  EXPECT_TRUE(in.good()) << path;
  std::vector<char> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  return torch::pickle_load(bytes).toGenericDict();
}

/// Steps `optimizer` over the reference's gradients and learning rates and expects the values
/// torch.optim.AdamW had after each step (within float32 rounding, or `bitwise`).
void expect_matches_reference(const c10::Dict<c10::IValue, c10::IValue>& reference, torch::Tensor& values,
                              FlatAdamW& optimizer, bool bitwise = false) {
  const torch::Tensor grads = reference.at("grads").toTensor();
  const torch::Tensor after = reference.at("after").toTensor();
  const torch::Tensor lrs = reference.at("lrs").toTensor();
  for (int64_t step = 0; step < lrs.size(0); ++step) {
    optimizer.step(values, grads[step], lrs[step].item<double>());
    EXPECT_TRUE(bitwise ? torch::equal(values, after[step])
                        : torch::allclose(values, after[step], /*rtol=*/1e-6, /*atol=*/1e-7))
        << "step " << step << " max diff " << (values - after[step]).abs().max().item<double>();
  }
  EXPECT_EQ(optimizer.step_count(), lrs.size(0));
}

TEST(FlatAdamW, MatchesTorchOptimAdamW) {
  auto reference = load_reference((test::fixture_dir("adamw_reference") / "adamw.pt").string());
  torch::Tensor values = reference.at("initial").toTensor().clone();
  FlatAdamW optimizer(values, OptimizerConfig());
  expect_matches_reference(reference, values, optimizer);
}

// FlatAdamW runs ATen's fused kernel over the flat buffer: bit for bit what
// torch.optim.AdamW(fused=True) computes on the separate parameters.
TEST(FlatAdamW, IsBitwiseTorchOptimAdamWFused) {
  auto reference = load_reference((test::fixture_dir("adamw_reference") / "adamw_fused.pt").string());
  torch::Tensor values = reference.at("initial").toTensor().clone();
  FlatAdamW optimizer(values, OptimizerConfig());
  expect_matches_reference(reference, values, optimizer, /*bitwise=*/true);
}

// Two parameter groups, the second at a tenth of the LR without weight decay, against
// torch.optim.AdamW with the same param_groups.
TEST(FlatAdamW, SegmentsMatchTorchParamGroups) {
  auto reference = load_reference((test::fixture_dir("adamw_reference") / "adamw_groups.pt").string());
  torch::Tensor values = reference.at("initial").toTensor().clone();
  const int64_t split = reference.at("first_group").toTensor().item<int64_t>();
  const OptimizerConfig config;
  FlatAdamW optimizer(values, config, {{0, split, 1.0, config.weight_decay()}, {split, values.numel(), 0.1, 0.0}});
  expect_matches_reference(reference, values, optimizer);

  // The same groups without settings of their own are bitwise the single-segment optimizer.
  torch::Tensor grouped = reference.at("initial").toTensor().clone();
  torch::Tensor whole = grouped.clone();
  const double decay = config.weight_decay();
  FlatAdamW two(grouped, config, {{0, split, 1.0, decay}, {split, grouped.numel(), 1.0, decay}});
  FlatAdamW one(whole, config);
  const torch::Tensor grads = reference.at("grads").toTensor();
  const torch::Tensor lrs = reference.at("lrs").toTensor();
  for (int64_t step = 0; step < lrs.size(0); ++step) {
    two.step(grouped, grads[step], lrs[step].item<double>());
    one.step(whole, grads[step], lrs[step].item<double>());
  }
  EXPECT_TRUE(torch::equal(grouped, whole));
}

// A ZeRO-1 slice takes the parts of the groups that fall into it, relative to its start.
TEST(FlatAdamW, SegmentsWithinASliceAreCutAndShifted) {
  const std::vector<AdamWSegment> segments{{0, 10, 1.0, 0.01}, {10, 25, 0.5, 0.0}};
  const std::vector<AdamWSegment> slice = segments_within(segments, 8, 20);
  ASSERT_EQ(slice.size(), 2u);
  EXPECT_EQ(slice[0].begin, 0);
  EXPECT_EQ(slice[0].end, 2);
  EXPECT_EQ(slice[1].begin, 2);
  EXPECT_EQ(slice[1].end, 12);
  EXPECT_EQ(slice[1].lr_factor, 0.5);
  EXPECT_TRUE(segments_within(segments, 25, 25).empty());
}

struct TwoLayers : torch::nn::Module {
  TwoLayers() {
    register_module("first", torch::nn::Linear(2, 3));
    register_module("second", torch::nn::Linear(3, 1));
  }
};

// Groups lay the parameters out group by group; a group that takes nothing, or a parameter in
// no group, is refused by name.
TEST(FlatParameters, GroupsAreContiguousAndMustCoverEveryParameter) {
  TwoLayers net;
  FlatParameters flat(net, {ParameterGroup{"late", "second."}, ParameterGroup{"early", ""}});
  ASSERT_EQ(flat.groups().size(), 2u);
  EXPECT_EQ(flat.names(), (std::vector<std::string>{"second.weight", "second.bias", "first.weight", "first.bias"}));
  EXPECT_EQ(flat.groups()[0].begin, 0);
  EXPECT_EQ(flat.groups()[0].end, 4);
  EXPECT_EQ(flat.groups()[1].end, flat.numel());
  try {
    TwoLayers other;
    FlatParameters unused(other, {ParameterGroup{"late", "second."}, ParameterGroup{"none", "third."}});
    FAIL() << "expected ConfigError";
  } catch (const ConfigError& error) {
    EXPECT_NE(std::string(error.what()).find("parameter group 'none' (prefix 'third.') holds no trained parameter"),
              std::string::npos)
        << error.what();
  }
  try {
    TwoLayers other;
    FlatParameters unused(other, {ParameterGroup{"late", "second."}});
    FAIL() << "expected ConfigError";
  } catch (const ConfigError& error) {
    EXPECT_NE(std::string(error.what()).find("trained parameter 'first.weight' is in no parameter group (groups: late)"),
              std::string::npos)
        << error.what();
  }
}

TEST(Ema, FollowsLitEmaWarmup) {
  EmaConfig config;
  torch::Tensor weights = torch::zeros({3});
  ExponentialMovingAverage ema(weights, config);
  weights.fill_(1.0);
  double expected = 0;
  for (int n = 1; n <= 5; ++n) {
    const double decay = std::min(0.9999, (1.0 + n) / (10.0 + n));
    EXPECT_DOUBLE_EQ(ema.next_decay(), decay);
    ema.update(weights);
    expected -= (1 - decay) * (expected - 1.0);
    EXPECT_NEAR(ema.shadow()[0].item<float>(), expected, 1e-6);
  }
  EXPECT_EQ(ema.num_updates(), 5);
}

TEST(Ema, SwapInAndOutRestoresTrainedWeights) {
  EmaConfig config;
  config.set_on_cpu(true);
  torch::Tensor weights = torch::full({4}, 2.0);
  ExponentialMovingAverage ema(weights, config);
  weights.fill_(5.0);
  ema.swap_in(weights);
  EXPECT_TRUE(torch::equal(weights, torch::full({4}, 2.0)));
  ema.swap_out(weights);
  EXPECT_TRUE(torch::equal(weights, torch::full({4}, 5.0)));
}

TEST(Ema, SwapExchangesBuffersLargerThanItsScratchChunkExactly) {
  // 16M float32 is the swap's scratch chunk: three chunks, the last one partial.
  const int64_t numel = (int64_t{16} << 20) * 2 + 12345;
  torch::Tensor weights = torch::randn({numel}, torch::TensorOptions().dtype(torch::kFloat32));
  ExponentialMovingAverage ema(weights, EmaConfig());
  const torch::Tensor ema_weights = weights.clone();
  weights.mul_(-3.0).add_(1.0);
  const torch::Tensor trained = weights.clone();

  ema.swap_in(weights);
  EXPECT_TRUE(torch::equal(weights, ema_weights));
  EXPECT_TRUE(ema.swapped_in());
  // While swapped in the shadow buffer holds the trained weights: updating it would corrupt both.
  EXPECT_THROW(ema.update(weights), c10::Error);
  EXPECT_THROW(ema.swap_in(weights), c10::Error);
  ema.swap_out(weights);
  EXPECT_TRUE(torch::equal(weights, trained));
  EXPECT_TRUE(torch::equal(ema.shadow(), ema_weights));
  EXPECT_THROW(ema.swap_out(weights), c10::Error);
}

TEST(LrSchedules, LambdaLinearIsTheRecipeWarmup) {
  LambdaLinearSchedule schedule{LambdaLinearScheduleOptions()};
  EXPECT_DOUBLE_EQ(schedule.factor(0), 1e-6);
  EXPECT_DOUBLE_EQ(schedule.factor(1), 1.0);
  EXPECT_DOUBLE_EQ(schedule.factor(12000), 1.0);
  LambdaLinearScheduleOptions decaying;
  decaying.set_warm_up_steps(10);
  decaying.set_f_start(0.0);
  decaying.set_f_min(0.5);
  decaying.set_cycle_length(110);
  LambdaLinearSchedule linear(decaying);
  EXPECT_DOUBLE_EQ(linear.factor(5), 0.5);
  EXPECT_DOUBLE_EQ(linear.factor(10), 0.5 + 0.5 * 100.0 / 110.0);
}

TEST(LrSchedules, WarmupThenCosineOrLinear) {
  DecayScheduleOptions options;
  options.set_warm_up_steps(10);
  DecaySchedule cosine(options, DecaySchedule::Shape::COSINE, 110);
  EXPECT_DOUBLE_EQ(cosine.factor(5), 0.5);
  EXPECT_DOUBLE_EQ(cosine.factor(10), 1.0);
  EXPECT_NEAR(cosine.factor(60), 0.5, 1e-12);
  EXPECT_NEAR(cosine.factor(110), 0.0, 1e-12);
  DecaySchedule linear(options, DecaySchedule::Shape::LINEAR, 110);
  EXPECT_NEAR(linear.factor(60), 0.5, 1e-12);
  ConstantScheduleOptions constant_options;
  constant_options.set_warm_up_steps(4);
  ConstantSchedule constant(constant_options);
  EXPECT_DOUBLE_EQ(constant.factor(2), 0.5);
  EXPECT_DOUBLE_EQ(constant.factor(100), 1.0);
}

}  // namespace
}  // namespace sdtrain
