// Mixed precision: the loss scaler against torch.amp.GradScaler, autocast on the CPU, and the
// trainer's fp16 path (an injected inf skips the step, the LR schedule does not advance, the
// scaler resumes from checkpoints) and bf16 path (it trains).
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <iterator>
#include <sstream>

#include <nlohmann/json.hpp>

#include "framework/dist/process_group.h"
#include "framework/train/autocast.h"
#include "framework/train/loss_scaler.h"
#include "framework/train/trainer.h"
#include "plugins/schedulers/lr/lr_schedules.pb.h"
#include "tests/common/test_env.h"

namespace sdtrain {
namespace {
namespace fs = std::filesystem;

using test::process_group;

c10::Dict<c10::IValue, c10::IValue> load_reference() {
  const fs::path path = test::fixture_dir("grad_scaler_reference") / "grad_scaler.pt";
  std::ifstream in(path, std::ios::binary);
  EXPECT_TRUE(in.good()) << path;
  std::vector<char> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  return torch::pickle_load(bytes).toGenericDict();
}

/// Drives DynamicLossScaler through the reference's steps: rows used scale, stepped, scale and
/// growth tracker after update().
void expect_like_grad_scaler(const torch::Tensor& reference, const LossScalingConfig& config) {
  DynamicLossScaler scaler(config);
  const auto ref = reference.accessor<double, 2>();
  for (int64_t step = 0; step < reference.size(1); ++step) {
    ASSERT_EQ(static_cast<double>(scaler.scale()), ref[0][step]) << "scale used at step " << step;
    const bool bad = ref[1][step] == 0;
    torch::Tensor grads = torch::tensor({1.0f, 2.0f, 3.0f}) * scaler.scale();
    if (bad) grads[1] = step % 2 ? std::numeric_limits<float>::infinity() : std::nanf("");
    const bool finite = scaler.unscale(grads).item<float>() == 0;
    EXPECT_EQ(finite, !bad) << "step " << step;
    scaler.update(!finite);
    ASSERT_EQ(static_cast<double>(scaler.scale()), ref[2][step]) << "scale after step " << step;
    ASSERT_EQ(static_cast<double>(scaler.growth_tracker()), ref[3][step]) << "growth tracker after step " << step;
  }
}

TEST(DynamicLossScaler, DefaultsFollowGradScaler) {
  auto reference = load_reference();
  LossScalingConfig config;  // 65536, x2 every 2000 finite steps, x0.5 on overflow
  expect_like_grad_scaler(reference.at("defaults").toTensor(), config);
}

TEST(DynamicLossScaler, GrowthAndBackoffFollowGradScaler) {
  auto reference = load_reference();
  LossScalingConfig config;
  config.set_init_scale(1000);
  config.set_growth_factor(3);
  config.set_backoff_factor(0.25);
  config.set_growth_interval(3);
  expect_like_grad_scaler(reference.at("custom").toTensor(), config);
}

TEST(DynamicLossScaler, UnscaleIsGradScalersBitForBit) {
  auto reference = load_reference();
  LossScalingConfig config;
  config.set_init_scale(3);
  DynamicLossScaler scaler(config);
  torch::Tensor grads = reference.at("grad").toTensor().clone();
  EXPECT_EQ(scaler.unscale(grads).item<float>(), 0.0f);
  EXPECT_TRUE(torch::equal(grads, reference.at("unscaled").toTensor()));
}

TEST(Autocast, RunsMatmulsInTheLowerPrecisionOnTheCpu) {
  const torch::Tensor a = torch::randn({4, 4});
  {
    AutocastScope scope(BF16, torch::Device(torch::kCPU));
    EXPECT_EQ(torch::mm(a, a).scalar_type(), torch::kBFloat16);
  }
  {
    AutocastScope scope(FP16, torch::Device(torch::kCPU));
    EXPECT_EQ(torch::mm(a, a).scalar_type(), torch::kFloat16);
  }
  {
    AutocastScope scope(FP32, torch::Device(torch::kCPU));
    EXPECT_EQ(torch::mm(a, a).scalar_type(), torch::kFloat32);
  }
  EXPECT_EQ(torch::mm(a, a).scalar_type(), torch::kFloat32);  // the scope ended
}

LoadedConfig make_config(const fs::path& dir, const std::vector<std::string>& overrides) {
  const std::string text = "plugin_libraries: \"" + test::library("sdtrain_test_plugins").string() + "\"\n" +
                           "run { output_dir: \"out\" seed: 5 log_every_n_steps: 1 val_every_n_epochs: 0 "
                           "checkpoint_every_n_steps: 0 }\n"
                           "model { type: \"test_tiny_denoiser\" options { "
                           "[type.googleapis.com/sdtrain_test.TinyDenoiserOptions] { inf_for_key: \"colors/5.png\" } } }\n"
                           "data { train { type: \"test_colors\" } batch_size: 4 num_workers: 1 shuffle: false "
                           "transforms { resolution: 16 } }\n"
                           "optimizer { base_learning_rate: 0.01 }\n"
                           "lr_schedule { type: \"constant\" options { "
                           "[type.googleapis.com/sdtrain.ConstantScheduleOptions] { warm_up_steps: 10 } } }\n"
                           "gradient_accumulation_steps: 1\n"
                           "precision: FP16\n"
                           "callbacks { type: \"test_recorder\" }\n";
  return load_train_config(test::write_text(dir / "cfg.pbtxt", text), overrides);
}

struct StepRow {
  int64_t step;
  double learning_rate;
  bool skipped;
};

std::vector<StepRow> read_steps(const fs::path& file) {
  std::ifstream in(file);
  std::vector<StepRow> rows;
  std::string line;
  while (std::getline(in, line)) {
    std::replace(line.begin(), line.end(), ',', ' ');
    std::istringstream fields(line);
    StepRow row{};
    int skipped = 0;
    fields >> row.step >> row.learning_rate >> skipped;
    row.skipped = skipped != 0;
    rows.push_back(row);
  }
  return rows;
}

TEST(MixedPrecision, Fp16InjectedInfSkipsTheStepAndTheLrScheduleWaits) {
  const fs::path dir = test::scratch_dir();
  auto comm = make_mpi_communicator(process_group().info(), 60.0);
  // Unshuffled batches of 4: micro-batch 1 (samples 4..7) holds colors/5.png, whose loss is inf.
  LoadedConfig config = make_config(dir, {"run.max_steps=4"});
  Trainer trainer(config, process_group().info(), *comm);
  trainer.fit();

  const std::vector<StepRow> rows = read_steps(dir / "out" / "test_steps.csv");
  ASSERT_EQ(rows.size(), 5u) << "4 optimizer steps and 1 skipped micro-batch";
  EXPECT_FALSE(rows[0].skipped);
  EXPECT_TRUE(rows[1].skipped);
  EXPECT_EQ(rows[1].step, 1) << "a skipped step does not count";
  // The LR schedule (warm-up 0, 0.1, 0.2, ... of 0.01) resumes where it was: the step after the
  // skipped one takes the LR the skipped one would have had.
  const std::vector<double> expected{trainer.learning_rate(0), trainer.learning_rate(1), trainer.learning_rate(2),
                                     trainer.learning_rate(3)};
  EXPECT_EQ(rows[1].learning_rate, expected[1]) << "the skipped step reports the LR it did not apply";
  EXPECT_EQ(rows[0].learning_rate, expected[0]);
  EXPECT_EQ(rows[2].learning_rate, expected[1]);
  EXPECT_EQ(rows[3].learning_rate, expected[2]);
  EXPECT_EQ(rows[4].learning_rate, expected[3]);
  EXPECT_GT(expected[1], expected[0]);
  EXPECT_EQ(trainer.progress().step, 4);
  EXPECT_EQ(trainer.optimizer().step_count(), 4) << "AdamW's own count (bias correction) must not advance either";
  // GradScaler: x0.5 on the overflow, then 3 finite steps counted towards the next growth.
  ASSERT_NE(trainer.loss_scaler(), nullptr);
  EXPECT_EQ(trainer.loss_scaler()->scale(), 32768.0f);
  EXPECT_EQ(trainer.loss_scaler()->growth_tracker(), 3);
  EXPECT_TRUE(torch::isfinite(trainer.parameters().values()).all().item<bool>());
}

TEST(MixedPrecision, Fp16ScalerStateResumesFromTheCheckpoint) {
  const fs::path scratch = test::scratch_dir();
  auto comm = make_mpi_communicator(process_group().info(), 60.0);
  LoadedConfig straight_config = make_config(scratch / "straight", {"run.max_steps=6"});
  Trainer straight(straight_config, process_group().info(), *comm);
  straight.fit();
  {
    LoadedConfig first = make_config(scratch / "resumed", {"run.max_steps=3"});
    Trainer trainer(first, process_group().info(), *comm);
    trainer.fit();
    std::ifstream state(scratch / "resumed" / "out" / "checkpoints" / "step-00000003" / "trainer_state.json");
    const nlohmann::json saved = nlohmann::json::parse(state);
    const nlohmann::json& scaler = saved.at("parts").at("loss_scaler");
    EXPECT_EQ(scaler.at("scale").get<double>(), 32768.0);
    EXPECT_EQ(scaler.at("growth_tracker").get<int64_t>(), 2);
  }
  LoadedConfig second = make_config(scratch / "resumed", {"run.max_steps=6", "run.resume=auto"});
  Trainer resumed(second, process_group().info(), *comm);
  resumed.fit();
  EXPECT_EQ(resumed.loss_scaler()->scale(), straight.loss_scaler()->scale());
  EXPECT_EQ(resumed.loss_scaler()->growth_tracker(), straight.loss_scaler()->growth_tracker());
  EXPECT_EQ(resumed.loss_scaler()->growth_tracker(), 5);
  EXPECT_TRUE(torch::equal(straight.parameters().values(), resumed.parameters().values()));
}

TEST(MixedPrecision, Bf16Trains) {
  const fs::path dir = test::scratch_dir();
  auto comm = make_mpi_communicator(process_group().info(), 60.0);
  LoadedConfig config = make_config(dir, {"run.max_steps=40", "precision=BF16", "data.shuffle=true",
                                          "model.options.inf_for_key=none", "lr_schedule.options.warm_up_steps=0"});
  Trainer trainer(config, process_group().info(), *comm);
  EXPECT_EQ(trainer.loss_scaler(), nullptr);
  trainer.fit();
  const auto& losses = trainer.loss_history();
  ASSERT_EQ(losses.size(), 40u);
  const double first = (losses[0] + losses[1] + losses[2] + losses[3]) / 4;
  const double last = (losses[36] + losses[37] + losses[38] + losses[39]) / 4;
  EXPECT_LT(last, 0.7 * first) << "first " << first << " last " << last;
  EXPECT_EQ(trainer.parameters().values().scalar_type(), torch::kFloat32) << "master weights stay fp32";
}

}  // namespace
}  // namespace sdtrain
