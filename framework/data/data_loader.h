#pragma once
/// Turns a Dataset into training micro-batches: sharded, seeded sampling (DistributedSampler),
/// decoding and transforms on worker threads, prefetching, caption dropout and the bad-data
/// policy. Every plugin dataset gets all of this for free.
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <future>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <thread>
#include <vector>

#include "framework/data/bucket_plan.h"
#include "framework/data/sampler.h"
#include "framework/data/transforms.h"
#include "proto/sdtrain.pb.h"
#include "sdtrain/dataset.h"
#include "sdtrain/model.h"

namespace sdtrain {

struct DataLoaderOptions {
  int batch_size = 4;
  int num_workers = 4;         ///< 0 = decode on the calling thread
  int prefetch_batches = 2;    ///< micro-batches prepared ahead (at least num_workers run at once)
  bool shuffle = true;
  uint64_t seed = 0;
  int rank = 0;
  int world_size = 1;
  float caption_dropout = 0;
  bool pin_memory = false;     ///< page-locked batches for fast host-to-GPU copies
  TransformConfig transforms;
  BadDataPolicy bad_data;
  /// The model's per-sample cache (Model::pixel_cache()), or null. For a sample whose transform
  /// is fixed given its flip, the loader asks it before decoding: on a hit the image is neither
  /// decoded nor transformed (Batch::cached). The order of samples and their seeds are the same
  /// either way, since the transform plan is drawn from the header's image size and the seed.
  std::shared_ptr<const PixelCache> pixel_cache;
  /// DreamBooth's class images (data.prior_preservation), or null. With them an epoch has
  /// max(#instance, #class) pairs (pair i: instance i mod #instance, class i mod #class), each
  /// micro-batch holds its batch_size instance samples followed by their class samples
  /// (Batch::prior_samples), and the class samples draw from seeds of their own.
  std::shared_ptr<const Dataset> prior_dataset;
  double prior_loss_weight = 1.0;  ///< Batch::prior_loss_weight
  /// Aspect-ratio buckets (data.buckets), or null for squares of transforms.resolution: the rules
  /// and the training set's plan_buckets(). Batches then come from a BucketSampler, each of one
  /// bucket; a sample whose header size no longer puts it in its planned bucket (the file changed
  /// since the plan) is a bad sample, replaced by another of the same bucket. The plan's
  /// unreadable samples count as bad samples from the start. Not combined with prior_dataset.
  std::shared_ptr<const BucketTable> bucket_table;
  std::shared_ptr<const BucketPlan> bucket_plan;
  /// data.shuffle_buffer: the shuffle buffer for a dataset read in shards (Dataset::shard_ends
  /// not empty), whose epochs are then shuffled shard by shard (sharded_permutation). Unused with
  /// prior_dataset (the pairs are not in shards).
  int64_t shuffle_buffer = 1000;
};

class DataLoader {
 public:
  DataLoader(std::shared_ptr<const Dataset> dataset, const DataLoaderOptions& options);
  ~DataLoader();
  DataLoader(const DataLoader&) = delete;
  DataLoader& operator=(const DataLoader&) = delete;

  int64_t batches_per_epoch() const { return sampler_->batches_per_epoch(); }

  /// Positions the loader at micro-batch `batch` of `epoch` (resume), dropping prefetched work.
  void seek(int64_t epoch, int64_t batch);

  /// The next micro-batch of the current epoch, or nullopt when the epoch is done (then seek to
  /// the next one). A bad sample (unreadable, corrupt, too large) is logged with its key and
  /// replaced by the next sample of a deterministic spare order, so the batch keeps its size and
  /// every rank its step count. Throws DataError once more than bad_data.max_bad_samples distinct
  /// samples were bad. Every batch carries each sample's PixelsOrigin (image SHA-256 and the
  /// transform plan applied, flip included), its epoch and whether it ends the epoch; samples
  /// found in options.pixel_cache come as Batch::cached instead of pixel rows.
  std::optional<Batch> next();

  /// Distinct bad samples seen so far on this rank (what bad_data.max_bad_samples limits).
  int64_t bad_samples() const;
  /// Their keys (dataset keys, or "#<index>" for samples without one), for checkpoints.
  std::set<std::string> bad_sample_keys() const;

  /// What decides the order of samples besides (seed, epoch), for checkpoints: the dataset size,
  /// its shards and data.shuffle_buffer (sharded datasets), whether to shuffle. A resume inside an
  /// epoch whose digest differs continues another order (the data or the settings changed).
  const std::string& order_digest() const { return order_digest_; }
  /// For a sharded dataset: the shard (0-based) and dataset index of this rank's first sample of
  /// micro-batch `batch` of `epoch`, where a resume continues reading; nullopt without shards or
  /// past the epoch's end. Call it from the thread that calls next() (the sampler's epoch cache).
  std::optional<std::pair<int64_t, int64_t>> shard_position(int64_t epoch, int64_t batch) const;
  /// Counts `keys` as bad samples already seen, so that a resumed run goes on counting from the
  /// checkpoint instead of from zero.
  void restore_bad_samples(const std::set<std::string>& keys);

 private:
  /// Builds the micro-batch from dataset indices (what the workers run).
  Batch build_batch(int64_t epoch, const MicroBatchPlan& plan);
  /// One source of a micro-batch's rows: the training set, or the class images.
  struct RowSource {
    const Dataset& dataset;
    uint64_t seed;           ///< mixed with (epoch, index) into each sample's seed
    const char* bad_prefix;  ///< prefixed to the keys of its bad samples ("" or "class/")
  };
  /// Appends the sample at `index` of `source` (or, when it is bad, the first good one of the
  /// sampler's spares for it) to `batch`, its pixels into `slot`; returns whether `slot` was
  /// written (false: the sample came from options_.pixel_cache).
  bool append_sample(const RowSource& source, int64_t epoch, int64_t index, const torch::Tensor& slot, Batch& batch);
  /// Reads sample `index` of `dataset` and fills `origin`; writes its pixels into `slot` (float32
  /// [3, H, W], contiguous, the micro-batch's size) and returns true, or returns false without
  /// touching `slot` when options_.pixel_cache had it (then *cached holds the cached tensor).
  bool load_pixels(const Dataset& dataset, int64_t index, uint64_t sample_seed, std::string* caption, std::string* key,
                   PixelsOrigin* origin, torch::Tensor* cached, const torch::Tensor& slot);
  /// The transform plan of a width x height image for a micro-batch whose rows are `slot`-sized:
  /// the square's, or the bucket's (DataError naming `name` when the image's bucket is not the
  /// micro-batch's).
  TransformPlan plan_for(int width, int height, uint64_t sample_seed, const torch::Tensor& slot,
                         const std::string& name) const;
  /// Counts `keys` as bad samples and throws DataError once they exceed the limit.
  void count_bad_samples(const std::vector<std::string>& keys, const std::string& last_message);
  void schedule_until(int64_t batch);
  void worker_loop();
  void stop_workers();

  std::shared_ptr<const Dataset> dataset_;        ///< the training set (cycled to the pairs' count)
  std::shared_ptr<const Dataset> prior_dataset_;  ///< the class images (cycled), or null
  DataLoaderOptions options_;
  ShardShuffle shards_;  ///< before sampler_, which is built from it
  std::unique_ptr<BatchSampler> sampler_;
  std::string order_digest_;

  int64_t epoch_ = 0;
  int64_t next_batch_ = 0;       ///< the batch next() returns next
  int64_t scheduled_until_ = 0;  ///< batches [next_batch_, scheduled_until_) are queued or done

  std::mutex mutex_;
  std::condition_variable work_ready_;
  std::deque<std::packaged_task<Batch()>> tasks_;
  std::map<int64_t, std::future<Batch>> pending_;
  std::vector<std::thread> workers_;
  bool stopping_ = false;

  mutable std::mutex bad_mutex_;
  std::set<std::string> bad_keys_;
};

}  // namespace sdtrain
