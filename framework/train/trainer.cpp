#include "framework/train/trainer.h"

#include <algorithm>
#include <filesystem>

#include "framework/data/subset_dataset.h"
#include "framework/data/bucket_plan.h"
#include "framework/dist/device_choice.h"
#include "framework/dist/flight_recorder.h"
#include "framework/io/atomic_file.h"
#include "framework/dist/gradient_sync.h"
#include "framework/dist/parameter_check.h"
#include "framework/log/logger.h"
#include "framework/train/autocast.h"
#include "framework/train/checkpoint_parts.h"
#include "framework/util/fault_points.h"
#include "framework/util/strings.h"
#include "sdtrain/errors.h"

namespace sdtrain {
namespace fs = std::filesystem;

namespace {

PluginSpec default_lr_schedule() {
  PluginSpec spec;
  spec.set_type("lambda_linear");
  return spec;
}

// The step the run ends at: run.max_steps or the end of run.max_epochs, whichever comes first.
int64_t total_steps_of(const TrainConfig& config, int64_t batches_per_epoch) {
  const int64_t accumulation = config.gradient_accumulation_steps();
  const int64_t steps_per_epoch = (batches_per_epoch + accumulation - 1) / accumulation;
  int64_t total = config.run().max_steps();
  const int64_t by_epochs = config.run().max_epochs() * steps_per_epoch;
  if (config.run().max_epochs() > 0 && (total == 0 || by_epochs < total)) total = by_epochs;
  return total;
}

}  // namespace

Trainer::Trainer(const LoadedConfig& loaded, const RankInfo& rank_info, Communicator& communicator)
    : Trainer(loaded, rank_info, communicator, pick_device(loaded.config.run().device(), rank_info.local_rank)) {}

Trainer::Trainer(const LoadedConfig& loaded, const RankInfo& rank_info, Communicator& communicator,
                 const torch::Device& device)
    : config_(loaded.config),
      base_dir_(loaded.base_dir),
      rank_info_(rank_info),
      communicator_(communicator),
      stop_flags_(communicator),
      device_(device) {
  make_current_device(device_);
  output_dir_ = fs::absolute(resolve_config_path(base_dir_, config_.run().output_dir())).string();
  if (rank_info_.rank == 0) fs::create_directories(output_dir_);
  communicator_.barrier();
  // From here a hang names the rank behind (flight_recorder.h); the files need the shared folder.
  FlightRecorder::instance().publish_to((fs::path(output_dir_) / "flight_recorder").string(), rank_info_.rank);

  build_plugins();
  build_data_loader();
  model_->to(device_);
  flat_ = std::make_unique<FlatParameters>(model_->trainable_module(), model_->parameter_groups());
  // Every rank starts from rank 0's weights, whatever each initialised.
  broadcast_parameters(flat_->values(), communicator_);
  verify_same_parameters(flat_->values(), communicator_, "after the start broadcast");
  step_ = std::make_unique<TrainStep>(*model_, *flat_, communicator_, config_, *lr_schedule_, device_);
  schedule_ = std::make_unique<EventSchedule>(config_.run());
  progress_.batches_per_epoch = loader_->batches_per_epoch();
  progress_.max_steps = config_.run().max_steps();
  progress_.total_steps = total_steps_of(config_, progress_.batches_per_epoch);
  check_export_folder();
  register_checkpoint_parts();
  if (!validation_prompts_.empty() && config_.run().val_every_n_epochs() <= 0) {
    SDTRAIN_LOG(WARNING) << "data.validation is set but run.val_every_n_epochs is 0: no validation will run";
  }

  SDTRAIN_LOG(INFO) << "model: " << config_.model().type() << ", " << flat_->names().size()
                    << " trained tensors, " << flat_->numel() << " parameters on " << device_.str();
  SDTRAIN_LOG(INFO) << "data: " << train_set_->size() << " samples, " << progress_.batches_per_epoch
                    << " micro-batches of " << config_.data().batch_size() << " per epoch on each of "
                    << rank_info_.world_size << " ranks, accumulation " << config_.gradient_accumulation_steps();
  if (class_set_) {
    SDTRAIN_LOG(INFO) << "prior preservation: " << class_set_->size() << " class images, "
                      << std::max(train_set_->size(), class_set_->size())
                      << " (instance, class) pairs per epoch, each micro-batch " << config_.data().batch_size()
                      << " instance + " << config_.data().batch_size() << " class samples, prior loss weight "
                      << config_.data().prior_preservation().loss_weight();
  }
}

Trainer::~Trainer() {
  // An ended run (finished, or failed with an exception) leaves no record behind; an aborted or
  // killed process does.
  FlightRecorder::instance().stop_publishing(/*remove_file=*/true);
}

void Trainer::build_plugins() {
  PluginContext context;
  context.base_dir = base_dir_;
  context.rank = rank_info_.rank;
  context.world_size = rank_info_.world_size;
  context.device = device_;
  context.compute_dtype = autocast_dtype(config_.precision());
  context.max_steps = config_.run().max_steps();

  torch::manual_seed(config_.run().seed());  // initial weights of anything randomly initialised
  model_ = Registry<Model>::instance().create(config_.model(), context, "model");
  train_set_ = Registry<Dataset>::instance().create(config_.data().train(), context, "data.train");
  if (config_.data().has_prior_preservation()) {
    const PriorPreservationConfig& prior = config_.data().prior_preservation();
    if (!prior.has_dataset()) throw ConfigError("data.prior_preservation.dataset: required (the class images)");
    if (!(prior.loss_weight() >= 0)) throw ConfigError("data.prior_preservation.loss_weight: must be >= 0");
    if (!model_->supports_prior_preservation()) {
      throw ConfigError("data.prior_preservation: model type '" + config_.model().type() +
                        "' does not support prior preservation (its training_loss ignores Batch::prior_samples)");
    }
    class_set_ = Registry<Dataset>::instance().create(prior.dataset(), context, "data.prior_preservation.dataset");
  }
  if (config_.data().has_validation_loss()) {
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
  if (config_.data().has_validation()) {
    const std::unique_ptr<Dataset> prompts =
        Registry<Dataset>::instance().create(config_.data().validation(), context, "data.validation");
    for (std::size_t i = 0; i < prompts->size(); ++i) validation_prompts_.push_back(prompts->get(i).caption);
  }
  lr_schedule_ = Registry<LrSchedule>::instance().create(
      config_.has_lr_schedule() ? config_.lr_schedule() : default_lr_schedule(), context, "lr_schedule");
  for (int i = 0; i < config_.callbacks_size(); ++i) {
    callbacks_.push_back(
        Registry<Callback>::instance().create(config_.callbacks(i), context, "callbacks[" + std::to_string(i) + "]"));
  }
}

void Trainer::build_data_loader() {
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
  data.prior_dataset = class_set_;
  data.prior_loss_weight = config_.data().prior_preservation().loss_weight();
  data.shuffle_buffer = config_.data().shuffle_buffer();
  if (config_.data().has_buckets()) plan_buckets_into(data);
  loader_ = std::make_unique<DataLoader>(train_set_, data);
}

void Trainer::plan_buckets_into(DataLoaderOptions& data) {
  if (class_set_) {
    throw ConfigError("data.buckets: not combined with data.prior_preservation (a micro-batch holds one bucket, and "
                      "class images would need the instances' buckets)");
  }
  const DataConfig& config = config_.data();
  auto table = std::make_shared<const BucketTable>(config.buckets(), config.transforms().resolution());
  // Every rank reads the sizes of its share of the images; an allreduce gives all of them.
  auto plan = std::make_shared<const BucketPlan>(plan_buckets(
      *train_set_, *table, config.bad_data().max_image_pixels(), config.num_workers(), rank_info_.rank,
      rank_info_.world_size, [this](torch::Tensor& sizes) { communicator_.allreduce_sum(sizes); }));
  const int64_t global_batch = static_cast<int64_t>(rank_info_.world_size) * config.batch_size();
  SDTRAIN_LOG(INFO) << format_bucket_report(*plan, global_batch);
  if (rank_info_.rank == 0 && !config.buckets().report_csv().empty()) {
    const std::string path = (fs::path(output_dir_) / config.buckets().report_csv()).string();
    write_file_atomic(path, bucket_report_csv(*plan, global_batch));
    SDTRAIN_LOG(INFO) << "bucket report written to " << path;
  }
  bucket_digest_ = bucket_plan_digest(*plan);
  data.bucket_table = std::move(table);
  data.bucket_plan = std::move(plan);
}

void Trainer::check_export_folder() {
  if (config_.final_export().folder().empty()) return;
  export_folder_ = (fs::path(output_dir_) / config_.final_export().folder()).lexically_normal().string();
  const std::string reason = model_->export_unavailable_reason();
  if (!reason.empty()) throw ConfigError("final_export.folder: " + reason);
  // Refused now rather than after the whole run: an existing export is never overwritten.
  if (fs::exists(export_folder_)) {
    throw ConfigError("final_export.folder: " + export_folder_ +
                      " already exists; move it away or choose another folder (it is never overwritten)");
  }
}

void Trainer::register_checkpoint_parts() {
  checkpoints_ = std::make_unique<CheckpointManager>(
      output_dir_, config_.run().keep_last_checkpoints(), rank_info_, communicator_,
      checkpoint_fence_timeout_s(config_.distributed().collective_timeout_s()));
  auto add = [&](const std::string& name, std::unique_ptr<Stateful> part) {
    checkpoints_->add_part(name, *part);
    checkpoint_parts_.push_back(std::move(part));
  };
  add(kRunRecordPart, std::make_unique<RunRecordState>(config_to_text(config_),
                                                       fs::absolute(base_dir_).lexically_normal().string()));
  add("progress", std::make_unique<ProgressState>(progress_, loss_history_));
  add("data", std::make_unique<DataPositionState>(progress_, *loader_, config_.data().batch_size(), bucket_digest_));
  // Before the weights: a checkpoint of adapters for another base is refused by name, not by shape.
  add("model_identity", std::make_unique<ModelIdentityState>(model_->checkpoint_identity()));
  add("model", std::make_unique<FlatTensorState>(*flat_, flat_->values(), kCheckpointWeightsFile));
  step_->add_checkpoint_parts(*checkpoints_);
  for (std::size_t i = 0; i < callbacks_.size(); ++i) {
    add("callback:" + std::to_string(i) + ":" + config_.callbacks(static_cast<int>(i)).type(),
        std::make_unique<CallbackState>(*callbacks_[i], *this));
  }
}

FlatAdamW& Trainer::optimizer() {
  TORCH_CHECK(step_->optimizer(), "Trainer::optimizer(): a distributed.zero_stage1 run has sharded_optimizer() instead");
  return *step_->optimizer();
}

template <class Hook>
void Trainer::for_each_callback(Hook hook) {
  for (auto& callback : callbacks_) hook(*callback);
}

void Trainer::fit() {
  resume_if_asked();
  for_each_callback([&](Callback& callback) { callback.on_fit_start(*this); });
  while (!schedule_->finished(progress_)) {
    if (!train_epoch()) break;  // stopped mid-epoch
    end_epoch();
  }
  // The flags sent at the last step's end: the run ends here whatever they say.
  stop_flags_.finish();
  if (schedule_->final_checkpoint_due(progress_.step)) save_checkpoint();
  export_final_model();
  for_each_callback([&](Callback& callback) { callback.on_fit_end(*this); });
}

bool Trainer::train_epoch() {
  for_each_callback([&](Callback& callback) { callback.on_train_epoch_start(*this); });
  loader_->seek(progress_.epoch, progress_.batch_in_epoch);
  step_->start_clock();
  while (!schedule_->finished(progress_)) {
    std::optional<Batch> batch = loader_->next();
    if (!batch) break;
    // Like Lightning, an epoch's last incomplete accumulation still makes a step.
    const bool epoch_ends = progress_.batch_in_epoch + 1 == progress_.batches_per_epoch;
    const bool step_ends = step_->micro_batches() + 1 == config_.gradient_accumulation_steps() || epoch_ends;
    step_->accumulate(*batch, step_ends);
    fault_point(FaultPoint::kStepAfterBackward, progress_.step + 1);
    ++progress_.batch_in_epoch;
    if (!step_ends) continue;
    step_last_batch_ = std::move(*batch);
    end_step();
    if (epoch_ends) break;  // epoch bookkeeping comes first (end_epoch), then any checkpoint
    if (schedule_->checkpoint_due(progress_.step)) save_checkpoint();
  }
  return progress_.batch_in_epoch >= progress_.batches_per_epoch;
}

void Trainer::end_step() {
  const StepOutcome outcome = step_->finish(progress_.step);
  if (!outcome.metrics.skipped) ++progress_.step;
  progress_.images_seen += outcome.images;
  loss_history_.push_back(outcome.metrics.loss);
  StepMetrics metrics = outcome.metrics;
  metrics.log_due = schedule_->log_due(progress_.step);
  for_each_callback([&](Callback& callback) { callback.on_step_end(*this, metrics); });
  step_last_batch_.reset();  // its pixels may hold device memory
  // SIGTERM/SIGUSR1 on any rank: every rank reads here the flags all ranks sent at the previous
  // step's end (stop_flag_exchange.h: no step waits for them), so every rank stops at this same
  // step, one after the signal's, and checkpoints (a run that ends at this step anyway just ends).
  if (stop_flags_.any_rank_stopping() && !schedule_->finished(progress_)) {
    schedule_->stop_by_signal();
    SDTRAIN_LOG(WARNING) << "stop signal received; stopping at step " << progress_.step
                         << " with a checkpoint (resume with --resume auto)";
  }
  step_->start_clock();
}

void Trainer::end_epoch() {
  model_->on_train_epoch_end(progress_.epoch);
  for_each_callback([&](Callback& callback) { callback.on_train_epoch_end(*this); });
  ++progress_.epoch;
  progress_.batch_in_epoch = 0;
  if (schedule_->validation_due(progress_.epoch)) run_validation();
  if (schedule_->checkpoint_due(progress_.step)) save_checkpoint();
}

void Trainer::resume_if_asked() {
  schedule_->checkpointed(progress_.step);
  const std::string& resume = config_.run().resume();
  if (resume.empty()) return;
  const std::string folder = checkpoints_->resolve(resume == "auto" ? resume : resolve_config_path(base_dir_, resume));
  if (folder.empty()) {
    SDTRAIN_LOG(INFO) << "run.resume=auto: no checkpoint in " << output_dir_ << ", starting fresh";
    return;
  }
  checkpoints_->load(folder);
  schedule_->checkpointed(progress_.step);
  verify_same_parameters(flat_->values(), communicator_, "after resuming from " + folder);
  SDTRAIN_LOG(INFO) << "resumed from " << folder << " at step " << progress_.step << ", epoch " << progress_.epoch
                    << ", micro-batch " << progress_.batch_in_epoch;
}

void Trainer::save_checkpoint() {
  const std::string folder = checkpoints_->save(progress_.step);
  schedule_->checkpointed(progress_.step);
  SDTRAIN_LOG(INFO) << "checkpoint written: " << folder;
}

std::map<std::string, double> Trainer::evaluate_validation_loss() {
  std::map<std::string, double> values;
  if (!validation_loss_) return values;
  values["val/loss"] = validation_loss_->evaluate(*model_, communicator_, config_.precision(), device_);
  if (ExponentialMovingAverage* ema = step_->ema()) {
    EmaWeightsScope ema_weights(ema, flat_->values());
    values["val/loss_ema"] = validation_loss_->evaluate(*model_, communicator_, config_.precision(), device_);
  }
  for (const auto& [name, value] : values) {
    metrics_[name] = value;
    SDTRAIN_LOG(INFO) << "step " << progress_.step << ", epoch " << progress_.epoch << ": " << name << " = "
                      << round_trip_decimal(value);
  }
  return values;
}

void Trainer::run_validation() {
  evaluate_validation_loss();
  EmaWeightsScope ema_weights(step_->ema(), flat_->values(), config_.ema().use_for_validation());
  for_each_callback([&](Callback& callback) { callback.on_validation_end(*this); });
}

void Trainer::with_validation_weights(const std::function<void()>& body) {
  EmaWeightsScope ema_weights(step_->ema(), flat_->values(), config_.ema().use_for_validation());
  body();
}

void Trainer::export_final_model() {
  if (export_folder_.empty()) return;
  const bool use_ema = step_->ema() != nullptr && config_.final_export().use_ema();
  if (rank_info_.rank == 0) {
    EmaWeightsScope ema_weights(step_->ema(), flat_->values(), use_ema);
    model_->export_pretrained(export_folder_);
    SDTRAIN_LOG(INFO) << "final model (" << (use_ema ? "EMA" : "trained") << " weights) exported to "
                      << export_folder_;
  }
  communicator_.barrier();
}

}  // namespace sdtrain
