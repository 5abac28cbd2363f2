#include "framework/train/train_step.h"

#include <chrono>
#include <cmath>
#include <map>
#include <stdexcept>
#include <string>
#include <vector>

#include "framework/log/logger.h"
#include "framework/train/autocast.h"
#include "framework/train/checkpoint_parts.h"
#include "framework/train/device_memory.h"
#include "framework/train/optimizer_shards.h"

namespace sdtrain {

namespace {

double now_s() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

/// The parameter groups as AdamW segments (a group without its own weight decay takes the
/// optimizer's).
std::vector<AdamWSegment> adamw_segments(const FlatParameters& parameters, const OptimizerConfig& optimizer) {
  std::vector<AdamWSegment> segments;
  for (const FlatGroup& group : parameters.groups()) {
    const double decay = group.spec.weight_decay < 0 ? optimizer.weight_decay() : group.spec.weight_decay;
    segments.push_back({group.begin, group.end, group.spec.lr_factor, decay});
    SDTRAIN_LOG(INFO) << "parameter group " << group.spec.name << ": " << group.end - group.begin
                      << " parameters, learning rate x" << group.spec.lr_factor << ", weight decay " << decay;
  }
  return segments;
}

}  // namespace

TrainStep::TrainStep(Model& model, FlatParameters& parameters, Communicator& communicator, const TrainConfig& config,
                     const LrSchedule& lr_schedule, const torch::Device& device)
    : model_(model),
      parameters_(parameters),
      communicator_(communicator),
      config_(config),
      lr_schedule_(lr_schedule),
      device_(device),
      world_size_(communicator.world_size()) {
  gradient_reducer_ = std::make_unique<GradientReducer>(
      parameters_.tensors(), parameters_.offsets(), parameters_.grads(), communicator_,
      gradient_bucket_bytes(config_.distributed().bucket_size_mb(), communicator_));
  const std::vector<AdamWSegment> segments = adamw_segments(parameters_, config_.optimizer());
  if (config_.distributed().zero_stage1()) {
    sharded_optimizer_ =
        std::make_unique<ShardedAdamW>(parameters_.values(), config_.optimizer(), communicator_, segments);
    SDTRAIN_LOG(INFO) << "ZeRO stage 1: this rank keeps the AdamW state of " << sharded_optimizer_->range().size()
                      << " of " << parameters_.numel() << " parameters";
  } else {
    optimizer_ = std::make_unique<FlatAdamW>(parameters_.values(), config_.optimizer(), segments);
  }
  if (config_.ema().enabled()) {
    ema_ = std::make_unique<ExponentialMovingAverage>(parameters_.values(), config_.ema());
    start_ema_from_model();
  }
  if (config_.precision() == FP16) loss_scaler_ = std::make_unique<DynamicLossScaler>(config_.loss_scaling());
  start_clock();
}

TrainStep::~TrainStep() = default;

void TrainStep::start_ema_from_model() {
  std::map<std::string, torch::Tensor> start = model_.ema_start_weights();
  if (start.empty()) return;
  torch::NoGradGuard no_grad;
  std::size_t copied = 0;
  for (std::size_t i = 0; i < parameters_.names().size(); ++i) {
    const auto found = start.find(parameters_.names()[i]);
    if (found == start.end()) continue;
    torch::Tensor slot = parameters_.view(ema_->shadow(), i);
    if (found->second.sizes() != slot.sizes()) continue;
    slot.copy_(found->second);
    // Dropped as soon as copied: a tensor viewing the weights file gives its pages back then
    // (MappedFile::hold), so the file's EMA copy never stands resident beside the EMA's own.
    start.erase(found);
    ++copied;
  }
  ema_->set_num_updates(model_.ema_start_updates());
  SDTRAIN_LOG(INFO) << "EMA starts from the weights file's EMA copy (" << copied << " of "
                    << parameters_.names().size() << " tensors; the others from the trained weights)"
                    << (ema_->num_updates() > 0
                            ? ", continuing its " + std::to_string(ema_->num_updates()) + " updates (next decay " +
                                  std::to_string(ema_->next_decay()) + ")"
                            : std::string());
}

void TrainStep::add_checkpoint_parts(CheckpointManager& checkpoints) {
  // The AdamW state this rank keeps (ZeRO-1: its slice; otherwise all of it).
  FlatAdamW& kept = sharded_optimizer_ ? sharded_optimizer_->shard() : *optimizer_;
  const int64_t kept_begin = sharded_optimizer_ ? sharded_optimizer_->range().begin : 0;
  checkpoint_parts_.push_back(std::make_unique<OptimizerShardState>(kept, kept_begin, parameters_.numel(),
                                                                    parameters_.layout()));
  checkpoints.add_part("optimizer", *checkpoint_parts_.back());
  if (ema_) {
    checkpoint_parts_.push_back(std::make_unique<EmaState>(parameters_, *ema_));
    checkpoints.add_part("ema", *checkpoint_parts_.back());
  }
  if (loss_scaler_) checkpoints.add_part("loss_scaler", *loss_scaler_);
}

void TrainStep::start_clock() { step_start_s_ = now_s(); }

double TrainStep::learning_rate(int64_t step) const {
  double base = config_.optimizer().base_learning_rate();
  if (config_.optimizer().scale_lr()) {
    base *= static_cast<double>(config_.gradient_accumulation_steps()) * world_size_ * config_.data().batch_size();
  }
  return base * lr_schedule_.factor(step);
}

void TrainStep::accumulate(Batch& batch, bool ends_step) {
  if (device_.is_cuda()) batch.pixels = batch.pixels.to(device_, /*non_blocking=*/true);
  torch::Tensor loss;
  {
    AutocastScope autocast(config_.precision(), device_);  // the forward pass only
    loss = model_.training_loss(batch);
  }
  TORCH_CHECK(loss.dim() == 0, "the model's training_loss must return a scalar");
  loss = loss.to(torch::kFloat32);
  gradient_reducer_->prepare_backward(/*sync=*/ends_step);
  const int accumulation = config_.gradient_accumulation_steps();
  if (loss_scaler_) {
    (loss * loss_scaler_->scale() / accumulation).backward();
  } else {
    (loss / accumulation).backward();
  }
  // Summed on the loss's device, read once per step in finish(): on CUDA an item() here would
  // make the host wait for every micro-batch's forward. float64, as the host sum it replaces.
  const torch::Tensor loss_value = loss.detach().to(torch::kFloat64);
  loss_sum_ = loss_sum_.defined() ? loss_sum_ + loss_value : loss_value;
  ++micro_batches_;
}

StepOutcome TrainStep::finish(int64_t steps_done) {
  // Gradients hold the sum over micro-batches of loss/accumulation; the allreduces of most
  // buckets ran during the last backward; average over ranks.
  gradient_reducer_->finish();

  // fp16: unscale before anything reads the gradients (clipping, the norm); every rank holds the
  // same allreduced gradients, so every rank makes the same skip decision.
  const torch::Tensor overflow = loss_scaler_ ? loss_scaler_->unscale(parameters_.grads()) : torch::Tensor();
  // The step's one host wait: the loss sum, the gradient norm and the fp16 overflow flag come
  // to the host in one copy (each read alone would make the host wait for the device again).
  const torch::Tensor grad_norm = parameters_.grads().norm();
  const torch::Tensor loss_sum =
      loss_sum_.defined() ? loss_sum_.to(grad_norm.device()) : torch::zeros({}, grad_norm.options().dtype(torch::kFloat64));
  std::vector<torch::Tensor> device_values{loss_sum, grad_norm.to(torch::kFloat64)};
  if (overflow.defined()) device_values.push_back(overflow.reshape({}).to(torch::kFloat64));
  const torch::Tensor host_values = torch::stack(device_values).to(torch::kCPU);
  const double* read = host_values.data_ptr<double>();

  // Mean of the micro-batch losses, averaged over ranks (for logging only).
  torch::Tensor loss_stats = torch::tensor({read[0], static_cast<double>(micro_batches_)}, torch::kFloat64);
  communicator_.allreduce_sum(loss_stats);
  StepOutcome outcome;
  StepMetrics& metrics = outcome.metrics;
  metrics.loss = loss_stats[0].item<double>() / loss_stats[1].item<double>();
  const bool overflowed = overflow.defined() && read[2] != 0.0;
  metrics.grad_norm = overflowed ? std::nan("") : read[1];
  const bool finite = std::isfinite(metrics.grad_norm);
  if (loss_scaler_) {
    const float used_scale = loss_scaler_->scale();
    loss_scaler_->update(!finite);
    if (!finite) {
      SDTRAIN_LOG(WARNING) << "step " << steps_done << ": fp16 gradients overflowed at loss scale " << used_scale
                           << "; update skipped, scale now " << loss_scaler_->scale();
    }
  }
  metrics.learning_rate = learning_rate(steps_done);  // a skipped step: the one the next step uses
  if (finite) {
    consecutive_skips_ = 0;
    apply_update(steps_done, metrics);
  } else {
    metrics.skipped = true;
    if (!loss_scaler_) SDTRAIN_LOG(WARNING) << "step " << steps_done << ": non-finite gradient norm; update skipped";
    // A skipped step does not count towards max_steps, so a run whose gradients never recover
    // would otherwise loop forever.
    if (++consecutive_skips_ >= kMaxConsecutiveSkips) {
      throw std::runtime_error(std::to_string(consecutive_skips_) +
                               " optimizer steps in a row had non-finite gradients; stopping (lower "
                               "optimizer.base_learning_rate or check the data)");
    }
  }
  parameters_.zero_grad();

  outcome.images = static_cast<int64_t>(micro_batches_) * config_.data().batch_size() * world_size_;
  metrics.step_time_s = now_s() - step_start_s_;
  metrics.images_per_s = metrics.step_time_s > 0 ? outcome.images / metrics.step_time_s : 0;
  metrics.peak_device_memory_bytes = peak_device_memory_bytes(device_);
  loss_sum_ = torch::Tensor();
  micro_batches_ = 0;
  return outcome;
}

void TrainStep::apply_update(int64_t steps_done, StepMetrics& metrics) {
  const double clip = config_.gradient_clip_norm();
  if (clip > 0 && metrics.grad_norm > clip) parameters_.grads().mul_(clip / (metrics.grad_norm + 1e-6));
  if (sharded_optimizer_) {
    sharded_optimizer_->step(parameters_.values(), parameters_.grads(), metrics.learning_rate);
  } else {
    optimizer_->step(parameters_.values(), parameters_.grads(), metrics.learning_rate);
  }
  if (ema_ && (steps_done + 1) % config_.ema().update_every() == 0) ema_->update(parameters_.values());
}

}  // namespace sdtrain
