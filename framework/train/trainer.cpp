#include "framework/train/trainer.h"

#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>

#include "framework/checkpoint/checkpoint_manager.h"
#include "framework/dist/device_choice.h"
#include "framework/data/subset_dataset.h"
#include "framework/dist/gradient_reducer.h"
#include "framework/dist/gradient_sync.h"
#include "framework/dist/parameter_check.h"
#include "framework/dist/stop_signal.h"
#include "framework/log/logger.h"
#include "framework/registry/registry.h"
#include "framework/train/autocast.h"
#include "framework/train/device_memory.h"
#include "framework/util/errors.h"

namespace sdtrain {
namespace fs = std::filesystem;

namespace {

double now_s() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

PluginSpec default_lr_schedule() {
  PluginSpec spec;
  spec.set_type("lambda_linear");
  return spec;
}

/// A value with all the digits a double has, for logs that tests and users compare exactly.
std::string full_precision(double value) {
  char text[32];
  std::snprintf(text, sizeof(text), "%.17g", value);
  return text;
}

}  // namespace

Trainer::Trainer(const LoadedConfig& loaded, const RankInfo& rank_info, Communicator& communicator)
    : config_(loaded.config),
      base_dir_(loaded.base_dir),
      rank_info_(rank_info),
      communicator_(communicator),
      device_(pick_device(loaded.config.run().device(), rank_info.local_rank)) {
  output_dir_ = fs::absolute(resolve_config_path(base_dir_, config_.run().output_dir())).string();
  if (rank_info_.rank == 0) fs::create_directories(output_dir_);
  communicator_.barrier();

  PluginContext context;
  context.config = &config_;
  context.base_dir = base_dir_;
  context.rank = rank_info_.rank;
  context.world_size = rank_info_.world_size;

  torch::manual_seed(config_.run().seed());  // initial weights of anything randomly initialised
  model_ = Registry<Model>::instance().create(config_.model(), context, "model");
  train_set_ = Registry<Dataset>::instance().create(config_.data().train(), context, "data.train");
  setup_validation_loss(context);
  if (config_.data().has_validation()) {
    validation_set_ = Registry<Dataset>::instance().create(config_.data().validation(), context, "data.validation");
  }
  lr_schedule_ = Registry<LrSchedule>::instance().create(
      config_.has_lr_schedule() ? config_.lr_schedule() : default_lr_schedule(), context, "lr_schedule");
  for (int i = 0; i < config_.callbacks_size(); ++i) {
    callbacks_.push_back(
        Registry<Callback>::instance().create(config_.callbacks(i), context, "callbacks[" + std::to_string(i) + "]"));
  }

  DataLoaderOptions data;
  data.batch_size = config_.data().batch_size();
  data.num_workers = config_.data().num_workers();
  data.prefetch_batches = config_.data().prefetch_batches();
  data.shuffle = config_.data().shuffle();
  data.seed = config_.run().seed();
  data.rank = rank_info_.rank;
  data.world_size = rank_info_.world_size;
  data.caption_dropout = config_.data().caption_dropout();
  data.pin_memory = device_.is_cuda();
  data.transforms = config_.data().transforms();
  data.bad_data = config_.data().bad_data();
  data.pixel_cache = model_->pixel_cache();  // cached samples are not decoded (model.h)
  loader_ = std::make_unique<DataLoader>(train_set_, data);

  model_->to(device_);
  flat_ = std::make_unique<FlatParameters>(model_->trainable_module());
  // Every rank starts from rank 0's weights, whatever each initialised.
  broadcast_parameters(flat_->values(), communicator_);
  verify_same_parameters(flat_->values(), communicator_, "after the start broadcast");
  gradient_reducer_ = std::make_unique<GradientReducer>(
      flat_->tensors(), flat_->offsets(), flat_->grads(), communicator_,
      static_cast<int64_t>(config_.distributed().bucket_size_mb()) * 1024 * 1024);
  if (config_.distributed().zero_stage1()) {
    sharded_optimizer_ = std::make_unique<ShardedAdamW>(flat_->values(), config_.optimizer(), communicator_);
    SDTRAIN_LOG(INFO) << "ZeRO stage 1: this rank keeps the AdamW state of " << sharded_optimizer_->range().size()
                      << " of " << flat_->numel() << " parameters";
  } else {
    optimizer_ = std::make_unique<FlatAdamW>(flat_->values(), config_.optimizer());
  }
  if (config_.ema().enabled()) {
    ema_ = std::make_unique<ExponentialMovingAverage>(flat_->values(), config_.ema());
    start_ema_from_model();
  }
  if (config_.precision() == FP16) loss_scaler_ = std::make_unique<DynamicLossScaler>(config_.loss_scaling());
  progress_.batches_per_epoch = loader_->batches_per_epoch();
  progress_.max_steps = config_.run().max_steps();

  if (!config_.final_export().folder().empty()) {
    export_folder_ = (fs::path(output_dir_) / config_.final_export().folder()).lexically_normal().string();
    const std::string reason = model_->export_unavailable_reason();
    if (!reason.empty()) throw ConfigError("final_export.folder: " + reason);
    // Refused now rather than after the whole run: an existing export is never overwritten.
    if (fs::exists(export_folder_)) {
      throw ConfigError("final_export.folder: " + export_folder_ +
                        " already exists; move it away or choose another folder (it is never overwritten)");
    }
  }

  SDTRAIN_LOG(INFO) << "model: " << config_.model().type() << ", " << flat_->names().size()
                    << " trained tensors, " << flat_->numel() << " parameters on " << device_.str();
  SDTRAIN_LOG(INFO) << "data: " << train_set_->size() << " samples, " << progress_.batches_per_epoch
                    << " micro-batches of " << data.batch_size << " per epoch on each of "
                    << rank_info_.world_size << " ranks, accumulation " << config_.gradient_accumulation_steps();
}

Trainer::~Trainer() = default;

void Trainer::start_ema_from_model() {
  const std::map<std::string, torch::Tensor> start = model_->ema_start_weights();
  if (start.empty()) return;
  torch::NoGradGuard no_grad;
  std::size_t copied = 0;
  for (std::size_t i = 0; i < flat_->names().size(); ++i) {
    const auto found = start.find(flat_->names()[i]);
    if (found == start.end()) continue;
    torch::Tensor slot = flat_->view(ema_->shadow(), i);
    if (found->second.sizes() != slot.sizes()) continue;
    slot.copy_(found->second);
    ++copied;
  }
  SDTRAIN_LOG(INFO) << "EMA starts from the weights file's EMA copy (" << copied << " of " << flat_->names().size()
                    << " tensors; the others from the trained weights)";
}

template <class Hook>
void Trainer::for_each_callback(Hook hook) {
  for (auto& callback : callbacks_) hook(*callback);
}

void Trainer::setup_validation_loss(const PluginContext& context) {
  if (!config_.data().has_validation_loss()) return;
  const ValidationLossConfig& options = config_.data().validation_loss();
  std::shared_ptr<const Dataset> held_out;
  if (options.has_dataset()) {
    held_out = Registry<Dataset>::instance().create(options.dataset(), context, "data.validation_loss.dataset");
  } else {
    const HeldOutSplit split = split_held_out(static_cast<int64_t>(train_set_->size()), options.held_out_fraction(),
                                              config_.run().seed());
    held_out = std::make_shared<SubsetDataset>(train_set_, split.held_out);
    train_set_ = std::make_shared<SubsetDataset>(train_set_, split.train);
  }
  const int batch_size = options.batch_size() > 0 ? options.batch_size() : config_.data().batch_size();
  validation_loss_ = std::make_unique<ValidationLoss>(held_out, config_.data().transforms(), batch_size,
                                                      config_.run().seed(), config_.data().bad_data(),
                                                      rank_info_.rank, rank_info_.world_size);
  SDTRAIN_LOG(INFO) << "validation loss: " << validation_loss_->size() << " held-out samples"
                    << (options.has_dataset() ? "" : " taken out of the training set");
}

std::map<std::string, double> Trainer::evaluate_validation_loss() {
  std::map<std::string, double> values;
  if (!validation_loss_) return values;
  values["val/loss"] = validation_loss_->evaluate(*model_, communicator_, config_.precision(), device_);
  if (ema_) {
    ema_->swap_in(flat_->values());
    try {
      values["val/loss_ema"] = validation_loss_->evaluate(*model_, communicator_, config_.precision(), device_);
    } catch (...) {
      ema_->swap_out(flat_->values());
      throw;
    }
    ema_->swap_out(flat_->values());
  }
  for (const auto& [name, value] : values) {
    metrics_[name] = value;
    SDTRAIN_LOG(INFO) << "step " << progress_.step << ", epoch " << progress_.epoch << ": " << name << " = "
                      << full_precision(value);
  }
  return values;
}

void Trainer::export_final_model() {
  if (export_folder_.empty()) return;
  const bool use_ema = ema_ && config_.final_export().use_ema();
  if (rank_info_.rank == 0) {
    if (use_ema) ema_->swap_in(flat_->values());
    try {
      model_->export_pretrained(export_folder_);
    } catch (...) {
      if (use_ema) ema_->swap_out(flat_->values());
      throw;
    }
    if (use_ema) ema_->swap_out(flat_->values());
    SDTRAIN_LOG(INFO) << "final model (" << (use_ema ? "EMA" : "trained") << " weights) exported to "
                      << export_folder_;
  }
  communicator_.barrier();
}

double Trainer::learning_rate(int64_t step) const {
  double base = config_.optimizer().base_learning_rate();
  if (config_.optimizer().scale_lr()) {
    base *= static_cast<double>(config_.gradient_accumulation_steps()) * rank_info_.world_size *
            config_.data().batch_size();
  }
  return base * lr_schedule_->factor(step);
}

void Trainer::optimizer_step(double loss_sum, int micro_batches, double step_start_s) {
  // Gradients hold the sum over micro-batches of loss/accumulation; the allreduces of most
  // buckets ran during the last backward; average over ranks.
  gradient_reducer_->finish();

  // Mean of the micro-batch losses, averaged over ranks (for logging only).
  torch::Tensor loss_stats = torch::tensor({loss_sum, static_cast<double>(micro_batches)}, torch::kFloat64);
  communicator_.allreduce_sum(loss_stats);
  const double mean_loss = loss_stats[0].item<double>() / loss_stats[1].item<double>();

  StepMetrics metrics;
  // fp16: unscale before anything reads the gradients (clipping, the norm); every rank holds the
  // same allreduced gradients, so every rank makes the same skip decision.
  const bool scaled_finite = loss_scaler_ ? loss_scaler_->unscale(flat_->grads()) : true;
  metrics.grad_norm = scaled_finite ? flat_->grads().norm().item<double>() : std::nan("");
  if (loss_scaler_) {
    const float used_scale = loss_scaler_->scale();
    loss_scaler_->update(!std::isfinite(metrics.grad_norm));
    if (!std::isfinite(metrics.grad_norm)) {
      SDTRAIN_LOG(WARNING) << "step " << progress_.step << ": fp16 gradients overflowed at loss scale "
                           << used_scale << "; update skipped, scale now " << loss_scaler_->scale();
    }
  }
  if (!std::isfinite(metrics.grad_norm)) {
    metrics.skipped = true;
    metrics.learning_rate = learning_rate(progress_.step);  // not applied; the next step uses it
    if (!loss_scaler_) {
      SDTRAIN_LOG(WARNING) << "step " << progress_.step << ": non-finite gradient norm; update skipped";
    }
    // A skipped step does not count towards max_steps, so a run whose gradients never recover
    // would otherwise loop forever.
    if (++consecutive_skips_ >= kMaxConsecutiveSkips) {
      throw std::runtime_error(std::to_string(consecutive_skips_) +
                               " optimizer steps in a row had non-finite gradients; stopping (lower "
                               "optimizer.base_learning_rate or check the data)");
    }
  } else {
    consecutive_skips_ = 0;
    if (config_.gradient_clip_norm() > 0 && metrics.grad_norm > config_.gradient_clip_norm()) {
      flat_->grads().mul_(config_.gradient_clip_norm() / (metrics.grad_norm + 1e-6));
    }
    metrics.learning_rate = learning_rate(progress_.step);
    if (sharded_optimizer_) {
      sharded_optimizer_->step(flat_->values(), flat_->grads(), metrics.learning_rate);
    } else {
      optimizer_->step(flat_->values(), flat_->grads(), metrics.learning_rate);
    }
    ++progress_.step;
    if (ema_ && progress_.step % config_.ema().update_every() == 0) ema_->update(flat_->values());
  }
  flat_->zero_grad();

  metrics.loss = mean_loss;
  metrics.step_time_s = now_s() - step_start_s;
  const int64_t images = static_cast<int64_t>(micro_batches) * config_.data().batch_size() * rank_info_.world_size;
  progress_.images_seen += images;
  metrics.images_per_s = metrics.step_time_s > 0 ? images / metrics.step_time_s : 0;
  metrics.peak_device_memory_bytes = peak_device_memory_bytes(device_);
  loss_history_.push_back(mean_loss);
  for_each_callback([&](Callback& callback) { callback.on_step_end(*this, metrics); });
}

void Trainer::run_validation() {
  evaluate_validation_loss();
  if (ema_ && config_.ema().use_for_validation()) ema_->swap_in(flat_->values());
  try {
    for_each_callback([&](Callback& callback) { callback.on_validation_end(*this); });
  } catch (...) {
    if (ema_ && config_.ema().use_for_validation()) ema_->swap_out(flat_->values());
    throw;
  }
  if (ema_ && config_.ema().use_for_validation()) ema_->swap_out(flat_->values());
}

void Trainer::fit() {
  CheckpointManager checkpoints(output_dir_, config_.run().keep_last_checkpoints(), rank_info_, communicator_,
                                checkpoint_fence_timeout_s(config_.distributed().collective_timeout_s()));
  // The AdamW state this rank keeps (ZeRO-1: its slice; otherwise all of it), written to and read
  // from the checkpoints' per-rank shards.
  FlatAdamW& kept_optimizer = sharded_optimizer_ ? sharded_optimizer_->shard() : *optimizer_;
  const int64_t kept_optimizer_begin = sharded_optimizer_ ? sharded_optimizer_->range().begin : 0;
  auto save = [&] {
    TrainingState state;
    state.step = progress_.step;
    state.epoch = progress_.epoch;
    state.batch_in_epoch = progress_.batch_in_epoch;
    state.batch_size = config_.data().batch_size();
    state.images_seen = progress_.images_seen;
    state.world_size = rank_info_.world_size;
    state.ema_updates = ema_ ? ema_->num_updates() : 0;
    state.loss_history = loss_history_;
    state.bad_samples = loader_->bad_sample_keys();
    state.config_dir = std::filesystem::absolute(base_dir_).lexically_normal().string();
    if (loss_scaler_) {
      state.loss_scale = loss_scaler_->scale();
      state.loss_scale_growth_tracker = loss_scaler_->growth_tracker();
    }
    for (std::size_t i = 0; i < callbacks_.size(); ++i) {
      state.callback_states[std::to_string(i) + ":" + config_.callbacks(static_cast<int>(i)).type()] =
          callbacks_[i]->on_save_checkpoint(*this);
    }
    const std::string folder =
        checkpoints.save(state, *flat_, kept_optimizer, kept_optimizer_begin, ema_.get(), config_);
    SDTRAIN_LOG(INFO) << "checkpoint written: " << folder;
  };

  if (!config_.run().resume().empty()) {
    const std::string resume = config_.run().resume();
    const std::string folder = checkpoints.resolve(resume == "auto" ? resume : resolve_config_path(base_dir_, resume));
    if (folder.empty()) {
      SDTRAIN_LOG(INFO) << "run.resume=auto: no checkpoint in " << output_dir_ << ", starting fresh";
    } else {
      TrainingState state = checkpoints.load(folder, *flat_, kept_optimizer, kept_optimizer_begin, ema_.get());
      progress_.step = state.step;
      progress_.epoch = state.epoch;
      progress_.batch_in_epoch = resumed_batch_in_epoch(state, rank_info_.world_size, config_.data().batch_size());
      progress_.images_seen = state.images_seen;
      loss_history_ = state.loss_history;
      loader_->restore_bad_samples(state.bad_samples);
      if (ema_) ema_->set_num_updates(state.ema_updates);
      // A checkpoint from an fp32/bf16 run (no scale saved) starts the scaler afresh.
      if (loss_scaler_ && state.loss_scale > 0) {
        loss_scaler_->restore(static_cast<float>(state.loss_scale), state.loss_scale_growth_tracker);
      }
      for (std::size_t i = 0; i < callbacks_.size(); ++i) {
        auto found = state.callback_states.find(std::to_string(i) + ":" + config_.callbacks(static_cast<int>(i)).type());
        if (found != state.callback_states.end()) callbacks_[i]->on_load_checkpoint(*this, found->second);
      }
      verify_same_parameters(flat_->values(), communicator_, "after resuming from " + folder);
      SDTRAIN_LOG(INFO) << "resumed from " << folder << " at step " << progress_.step << ", epoch "
                        << progress_.epoch << ", micro-batch " << progress_.batch_in_epoch;
    }
  }

  const int accumulation = config_.gradient_accumulation_steps();
  const int64_t max_steps = config_.run().max_steps();
  const int64_t max_epochs = config_.run().max_epochs();
  const int64_t checkpoint_every = config_.run().checkpoint_every_n_steps();
  auto done = [&] {
    return stop_requested_ || (max_steps > 0 && progress_.step >= max_steps) ||
           (max_epochs > 0 && progress_.epoch >= max_epochs);
  };

  for_each_callback([&](Callback& callback) { callback.on_fit_start(*this); });
  int64_t last_checkpoint_step = progress_.step;
  while (!done()) {
    for_each_callback([&](Callback& callback) { callback.on_train_epoch_start(*this); });
    loader_->seek(progress_.epoch, progress_.batch_in_epoch);
    double loss_sum = 0;
    int micro_batches = 0;
    double step_start = now_s();
    while (!done()) {
      std::optional<Batch> batch = loader_->next();
      if (!batch) break;
      if (device_.is_cuda()) batch->pixels = batch->pixels.to(device_, /*non_blocking=*/true);
      torch::Tensor loss;
      {
        AutocastScope autocast(config_.precision(), device_);  // the forward pass only
        loss = model_->training_loss(*batch);
      }
      TORCH_CHECK(loss.dim() == 0, "the model's training_loss must return a scalar");
      loss = loss.to(torch::kFloat32);
      // Like Lightning, an epoch's last incomplete accumulation still makes a step; only the
      // backward of a step's last micro-batch sends gradients (no_sync for the others).
      const bool step_ends = micro_batches + 1 == accumulation || progress_.batch_in_epoch + 1 == progress_.batches_per_epoch;
      gradient_reducer_->arm(step_ends);
      if (loss_scaler_) {
        (loss * loss_scaler_->scale() / accumulation).backward();
      } else {
        (loss / accumulation).backward();
      }
      loss_sum += loss.item<double>();
      ++micro_batches;
      ++progress_.batch_in_epoch;
      const bool epoch_end = progress_.batch_in_epoch == progress_.batches_per_epoch;
      if (micro_batches == accumulation || epoch_end) {
        optimizer_step(loss_sum, micro_batches, step_start);
        loss_sum = 0;
        micro_batches = 0;
        step_start = now_s();
        // SIGTERM/SIGUSR1 on any rank: every rank stops at this same step and checkpoints below
        // (a run that ends at this step anyway just ends).
        const bool stop_signal = any_rank_stopping(communicator_);
        if (stop_signal && !done()) {
          stopped_by_signal_ = stop_requested_ = true;
          SDTRAIN_LOG(WARNING) << "stop signal received; stopping at step " << progress_.step
                               << " with a checkpoint (resume with --resume auto)";
        }
        if (epoch_end) break;  // epoch bookkeeping happens below, before any checkpoint
        if (checkpoint_every > 0 && progress_.step % checkpoint_every == 0 && progress_.step != last_checkpoint_step) {
          save();
          last_checkpoint_step = progress_.step;
        }
      }
    }
    if (progress_.batch_in_epoch < progress_.batches_per_epoch) break;  // stopped mid-epoch
    for_each_callback([&](Callback& callback) { callback.on_train_epoch_end(*this); });
    ++progress_.epoch;
    progress_.batch_in_epoch = 0;
    const int64_t val_every = config_.run().val_every_n_epochs();
    if (val_every > 0 && progress_.epoch % val_every == 0 && !stopped_by_signal_) run_validation();
    if (checkpoint_every > 0 && progress_.step % checkpoint_every == 0 && progress_.step != last_checkpoint_step) {
      save();
      last_checkpoint_step = progress_.step;
    }
  }
  if (progress_.step != last_checkpoint_step || progress_.step == 0) save();
  export_final_model();
  for_each_callback([&](Callback& callback) { callback.on_fit_end(*this); });
}

}  // namespace sdtrain
