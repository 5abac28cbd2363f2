#include "framework/data/data_loader.h"

#include <algorithm>
#include <tuple>

#include "framework/data/bucket_sampler.h"
#include "framework/data/image_codec.h"
#include "framework/data/subset_dataset.h"
#include "framework/data/transforms.h"
#include "framework/log/logger.h"
#include "framework/util/file_util.h"
#include "sdtrain/errors.h"

namespace sdtrain {
namespace {

/// Examples per epoch: the training set's, or with class images the number of pairs.
std::size_t epoch_length(const Dataset& dataset, const DataLoaderOptions& options) {
  if (!options.prior_dataset) return dataset.size();
  if (dataset.size() == 0 || options.prior_dataset->size() == 0) {
    throw ConfigError(std::string("data.prior_preservation: the ") +
                      (dataset.size() == 0 ? "instance (data.train)" : "class (data.prior_preservation.dataset)") +
                      " dataset is empty");
  }
  return std::max(dataset.size(), options.prior_dataset->size());
}

/// `dataset` repeated to `length` examples: example i is the dataset's example i mod its size.
std::shared_ptr<const Dataset> cycled(std::shared_ptr<const Dataset> dataset, std::size_t length) {
  if (!dataset || dataset->size() == length) return dataset;
  std::vector<int64_t> indices(length);
  for (std::size_t i = 0; i < length; ++i) indices[i] = static_cast<int64_t>(i % dataset->size());
  return std::make_shared<SubsetDataset>(std::move(dataset), std::move(indices));
}

/// Mixed into the run seed for the class samples' seeds, so they differ from the instances'.
constexpr uint64_t kPriorSeedSalt = 0xC1A55;

/// The shards of `dataset` and the shuffle buffer, or none when the dataset has none (or is the
/// cycled pairs of prior preservation).
ShardShuffle shard_shuffle(const Dataset& dataset, const DataLoaderOptions& options) {
  ShardShuffle shards;
  shards.buffer = options.shuffle_buffer;
  if (options.prior_dataset) return shards;
  for (std::size_t end : dataset.shard_ends()) shards.shard_ends.push_back(static_cast<int64_t>(end));
  if (!shards.shard_ends.empty()) {
    TORCH_CHECK(std::is_sorted(shards.shard_ends.begin(), shards.shard_ends.end()) &&
                    shards.shard_ends.back() == static_cast<int64_t>(dataset.size()),
                "Dataset::shard_ends: not ascending to size() ", dataset.size());
  }
  return shards;
}

/// The square sampler, or with a bucket plan the bucket sampler.
std::unique_ptr<BatchSampler> make_sampler(const Dataset& dataset, const DataLoaderOptions& options,
                                           const ShardShuffle& shards) {
  const auto dataset_size = static_cast<int64_t>(dataset.size());
  if (!options.bucket_plan) {
    return std::make_unique<DistributedSampler>(dataset_size, options.batch_size, options.rank, options.world_size,
                                                options.shuffle, options.seed, options.transforms.resolution(),
                                                shards);
  }
  if (options.prior_dataset) {
    throw ConfigError("data.buckets: not combined with data.prior_preservation (a micro-batch holds one bucket, and "
                      "class images would need the instances' buckets)");
  }
  TORCH_CHECK(options.bucket_table, "DataLoaderOptions: bucket_plan without bucket_table");
  TORCH_CHECK(static_cast<int64_t>(options.bucket_plan->bucket_of.size()) == dataset_size,
              "DataLoaderOptions: a bucket plan of ", options.bucket_plan->bucket_of.size(), " samples for a dataset of ",
              dataset_size);
  return std::make_unique<BucketSampler>(options.bucket_plan->bucket_of, options.bucket_plan->buckets,
                                         options.batch_size, options.rank, options.world_size, options.shuffle,
                                         options.seed, shards);
}

}  // namespace

DataLoader::DataLoader(std::shared_ptr<const Dataset> dataset, const DataLoaderOptions& options)
    : dataset_(cycled(dataset, epoch_length(*dataset, options))),
      prior_dataset_(cycled(options.prior_dataset, dataset_->size())),  // dataset_: already the pairs' count
      options_(options),
      shards_(shard_shuffle(*dataset_, options)),
      sampler_(make_sampler(*dataset_, options, shards_)) {
  std::string order = "size " + std::to_string(dataset_->size()) + " shuffle " + std::to_string(options_.shuffle);
  if (!shards_.shard_ends.empty()) {
    order += " buffer " + std::to_string(shards_.buffer) + " shard_ends";
    for (int64_t end : shards_.shard_ends) order += " " + std::to_string(end);
  }
  order_digest_ = sha256_hex(order);
  if (options_.bucket_plan && !options_.bucket_plan->unreadable.empty()) {
    std::vector<std::string> keys;
    for (const UnreadableSample& bad : options_.bucket_plan->unreadable) {
      SDTRAIN_LOG_ALL_RANKS(WARNING) << "skipping bad sample " << bad.index << ": " << bad.message;
      keys.push_back(bad.key);
    }
    count_bad_samples(keys, options_.bucket_plan->unreadable.back().message);
  }
  for (int i = 0; i < options_.num_workers; ++i) workers_.emplace_back([this] { worker_loop(); });
}

std::optional<std::pair<int64_t, int64_t>> DataLoader::shard_position(int64_t epoch, int64_t batch) const {
  if (shards_.shard_ends.empty() || batch >= sampler_->batches_per_epoch()) return std::nullopt;
  const int64_t index = sampler_->micro_batch(epoch, batch).indices.front();
  const int64_t shard =
      std::upper_bound(shards_.shard_ends.begin(), shards_.shard_ends.end(), index) - shards_.shard_ends.begin();
  return std::make_pair(shard, index);
}

void DataLoader::count_bad_samples(const std::vector<std::string>& keys, const std::string& last_message) {
  int64_t bad_count = 0;
  {
    std::lock_guard<std::mutex> lock(bad_mutex_);
    bad_keys_.insert(keys.begin(), keys.end());
    bad_count = static_cast<int64_t>(bad_keys_.size());
  }
  const int max_bad = options_.bad_data.max_bad_samples();
  if (max_bad >= 0 && bad_count > max_bad) {
    throw DataError(std::to_string(bad_count) + " bad samples exceed data.bad_data.max_bad_samples=" +
                    std::to_string(max_bad) + "; last: " + last_message);
  }
}

DataLoader::~DataLoader() { stop_workers(); }

void DataLoader::stop_workers() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stopping_ = true;
  }
  work_ready_.notify_all();
  for (auto& worker : workers_) worker.join();
  workers_.clear();
}

void DataLoader::worker_loop() {
  for (;;) {
    std::packaged_task<Batch()> task;
    {
      std::unique_lock<std::mutex> lock(mutex_);
      work_ready_.wait(lock, [this] { return stopping_ || !tasks_.empty(); });
      if (stopping_) return;
      task = std::move(tasks_.front());
      tasks_.pop_front();
    }
    task();  // exceptions land in the future
  }
}

void DataLoader::seek(int64_t epoch, int64_t batch) {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    tasks_.clear();  // queued work is dropped; running work finishes and is discarded below
  }
  for (auto& entry : pending_) {
    if (entry.second.valid()) entry.second.wait();
  }
  pending_.clear();
  epoch_ = epoch;
  next_batch_ = batch;
  scheduled_until_ = batch;
}

void DataLoader::schedule_until(int64_t batch) {
  const int64_t end = std::min(batch, batches_per_epoch());
  while (scheduled_until_ < end) {
    const int64_t index = scheduled_until_++;
    MicroBatchPlan plan = sampler_->micro_batch(epoch_, index);
    const int64_t epoch = epoch_;
    std::packaged_task<Batch()> task([this, epoch, plan = std::move(plan)] { return build_batch(epoch, plan); });
    pending_.emplace(index, task.get_future());
    if (workers_.empty()) {
      task();
    } else {
      std::lock_guard<std::mutex> lock(mutex_);
      tasks_.push_back(std::move(task));
    }
  }
  work_ready_.notify_all();
}

std::optional<Batch> DataLoader::next() {
  if (next_batch_ >= batches_per_epoch()) return std::nullopt;
  const int64_t ahead = std::max<int64_t>(options_.prefetch_batches, options_.num_workers);
  schedule_until(next_batch_ + 1 + ahead);
  auto found = pending_.find(next_batch_);
  Batch batch = found->second.get();
  pending_.erase(found);
  ++next_batch_;
  return batch;
}

int64_t DataLoader::bad_samples() const {
  std::lock_guard<std::mutex> lock(bad_mutex_);
  return static_cast<int64_t>(bad_keys_.size());
}

std::set<std::string> DataLoader::bad_sample_keys() const {
  std::lock_guard<std::mutex> lock(bad_mutex_);
  return bad_keys_;
}

void DataLoader::restore_bad_samples(const std::set<std::string>& keys) {
  std::lock_guard<std::mutex> lock(bad_mutex_);
  bad_keys_.insert(keys.begin(), keys.end());
}

bool DataLoader::load_pixels(const Dataset& dataset, int64_t index, uint64_t sample_seed, std::string* caption,
                             std::string* key, PixelsOrigin* origin, torch::Tensor* cached, const torch::Tensor& slot) {
  Sample sample = dataset.get(static_cast<std::size_t>(index));
  *caption = sample.caption;
  *key = sample.key;
  // Messages name the file itself where the dataset knows it (a user has to find it).
  const std::string& name = sample.location.empty() ? sample.key : sample.location;
  // The size from the header is enough to draw the transform plan (and so the flip) exactly as
  // from the decoded image, so a sample found in the cache is never decoded.
  if (!sample.image.empty() &&
      static_cast<int64_t>(sample.image.width) * sample.image.height > options_.bad_data.max_image_pixels()) {
    throw DataError(name + ": image of " + std::to_string(sample.image.width) + "x" +
                    std::to_string(sample.image.height) + " pixels exceeds data.bad_data.max_image_pixels");
  }
  const auto [width, height] = sample_image_size(sample, name, options_.bad_data.max_image_pixels());
  const TransformPlan plan = plan_for(width, height, sample_seed, slot, name);
  origin->original_width = width;
  origin->original_height = height;
  // The plan crops, then flips; the same pixels are the flipped image cropped at the mirrored
  // offset, which is where diffusers' SDXL script (flip, then crop) measures the crop.
  origin->crop_left = plan.flip ? plan.resized_width - plan.crop_x - plan.crop_width : plan.crop_x;
  origin->crop_top = plan.crop_y;
  origin->flip = plan.flip;
  origin->deterministic = plan_fixed_given_flip(plan, options_.transforms);
  // The content hash and plan description are cache keys: computed only when a cache asks.
  if (options_.pixel_cache) {
    origin->source = sample.key + "#" +
                     sha256_hex(!sample.encoded.empty()
                                    ? sample.encoded
                                    : std::string(sample.image.pixels.begin(), sample.image.pixels.end()) + "/" +
                                          std::to_string(width) + "x" + std::to_string(height));
    origin->transform = describe_plan(plan, options_.transforms);
  }
  const bool within_limit = static_cast<int64_t>(width) * height <= options_.bad_data.max_image_pixels();
  if (options_.pixel_cache && origin->deterministic && within_limit) {
    *cached = options_.pixel_cache->find(*origin);
    if (cached->defined()) return false;
  }
  if (sample.image.empty()) {
    sample.image = decode_image(sample.encoded, name, options_.bad_data.max_image_pixels());
    if (sample.image.width != width || sample.image.height != height) {
      throw DataError(name + ": decoded size " + std::to_string(sample.image.width) + "x" +
                      std::to_string(sample.image.height) + " differs from the header's " + std::to_string(width) +
                      "x" + std::to_string(height));
    }
  }
  apply_plan_into(sample.image, plan, options_.transforms, slot);
  return true;
}

TransformPlan DataLoader::plan_for(int width, int height, uint64_t sample_seed, const torch::Tensor& slot,
                                   const std::string& name) const {
  if (!options_.bucket_table) return plan_transforms(width, height, options_.transforms, sample_seed);
  const BucketAssignment assignment = options_.bucket_table->assign(width, height);
  const BucketResolution wanted{static_cast<int>(slot.size(2)), static_cast<int>(slot.size(1))};
  if (assignment.dropped || assignment.bucket != wanted) {
    throw DataError(name + ": its image of " + std::to_string(width) + "x" + std::to_string(height) + " belongs " +
                    (assignment.dropped ? std::string("to no bucket")
                                        : "to bucket " + std::to_string(assignment.bucket.width) + "x" +
                                              std::to_string(assignment.bucket.height)) +
                    ", not to the micro-batch's " + std::to_string(wanted.width) + "x" +
                    std::to_string(wanted.height) + " (the file changed after the sizes were read)");
  }
  return plan_bucket_transforms(assignment, options_.transforms, sample_seed);
}

Batch DataLoader::build_batch(int64_t epoch, const MicroBatchPlan& plan) {
  Batch batch;
  const auto pairs = static_cast<int64_t>(plan.indices.size());
  const int64_t rows_count = prior_dataset_ ? 2 * pairs : pairs;
  // Each sample is transformed straight into its row (no stacking copy), in pinned memory from
  // the start when the batch goes to a GPU.
  const torch::Tensor rows =
      torch::empty({rows_count, 3, plan.height, plan.width},
                   torch::TensorOptions().dtype(torch::kFloat32).pinned_memory(options_.pin_memory));
  std::vector<int64_t> decoded;  // the rows written, in batch order
  auto append_all = [&](const RowSource& source) {
    for (int64_t index : plan.indices) {
      const auto row = static_cast<int64_t>(batch.captions.size());
      if (append_sample(source, epoch, index, rows[row], batch)) decoded.push_back(row);
    }
  };
  append_all(RowSource{*dataset_, options_.seed, ""});
  if (prior_dataset_) {
    append_all(RowSource{*prior_dataset_, mix_seed(options_.seed, kPriorSeedSalt), "class/"});
    batch.prior_samples = pairs;
    batch.prior_loss_weight = options_.prior_loss_weight;
  }
  if (static_cast<int64_t>(decoded.size()) == rows_count) {
    batch.cached.clear();  // no sample came from the cache
    batch.pixels = rows;
  } else {
    batch.pixels = decoded.empty() ? torch::empty({0, 3, plan.height, plan.width}, rows.options())
                                   : rows.index_select(0, torch::tensor(decoded));
  }
  return batch;
}

bool DataLoader::append_sample(const RowSource& source, int64_t epoch, int64_t index, const torch::Tensor& slot,
                               Batch& batch) {
  // A bad sample is replaced by the sampler's spares for it (the samples after it in dataset order
  // that fit the micro-batch): a fixed sequence, so every run and every rank makes the same choice.
  const int64_t spares = sampler_->spare_count(index);
  for (int64_t attempt = 0;; ++attempt) {
    if (attempt >= spares) {
      throw DataError(std::string("every sample of the ") + (source.bad_prefix[0] ? "class images" : "training set") +
                      (options_.bucket_plan ? " in this micro-batch's bucket" : "") + " is unreadable");
    }
    const int64_t candidate = sampler_->spare(index, attempt);
    const uint64_t sample_seed = mix_seed(source.seed, static_cast<uint64_t>(epoch), static_cast<uint64_t>(candidate));
    std::string caption;
    std::string key;
    PixelsOrigin origin;
    torch::Tensor cached;
    bool written = false;
    try {
      written = load_pixels(source.dataset, candidate, sample_seed, &caption, &key, &origin, &cached, slot);
    } catch (const DataError& error) {
      // By name where the sample or the error has one (stable across dataset edits), else by index.
      const std::string& name = !key.empty() ? key : error.sample_key();
      const std::string bad_key = source.bad_prefix + (name.empty() ? "#" + std::to_string(candidate) : name);
      bool first_time = false;
      {
        std::lock_guard<std::mutex> lock(bad_mutex_);
        first_time = bad_keys_.count(bad_key) == 0;
      }
      if (first_time) {
        SDTRAIN_LOG_ALL_RANKS(WARNING) << "skipping bad " << (source.bad_prefix[0] ? "class " : "") << "sample "
                                       << candidate << ": " << error.what();
      }
      count_bad_samples({bad_key}, error.what());
      continue;
    }
    if (options_.caption_dropout > 0 && uniform_from_seed(mix_seed(sample_seed, 0xCAD0)) < options_.caption_dropout) {
      caption.clear();
    }
    batch.cached.push_back(cached);
    batch.origins.push_back(std::move(origin));
    batch.captions.push_back(std::move(caption));
    batch.keys.push_back(std::move(key));
    batch.seeds.push_back(mix_seed(sample_seed, 0x1055));
    return written;
  }
}

}  // namespace sdtrain
