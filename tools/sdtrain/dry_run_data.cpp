#include "tools/sdtrain/dry_run_data.h"

#include <filesystem>

#include "framework/data/bucket_plan.h"
#include "framework/data/sampler.h"
#include "framework/data/subset_dataset.h"
#include "framework/io/atomic_file.h"
#include "framework/registry/registry.h"
#include "sdtrain/dataset.h"
#include "sdtrain/errors.h"

namespace sdtrain {
namespace fs = std::filesystem;

void dry_run_data(const LoadedConfig& loaded, int world_size, std::ostream& out) {
  const TrainConfig& config = loaded.config;
  const DataConfig& data = config.data();
  if (world_size < 1) throw ConfigError("--world-size: must be at least 1, got " + std::to_string(world_size));
  PluginContext context;
  context.base_dir = loaded.base_dir;
  context.world_size = world_size;
  std::shared_ptr<const Dataset> train = Registry<Dataset>::instance().create(data.train(), context, "data.train");
  if (data.has_validation_loss() && !data.validation_loss().has_dataset()) {
    const HeldOutSplit split = split_held_out(static_cast<int64_t>(train->size()),
                                              data.validation_loss().held_out_fraction(), config.run().seed());
    train = std::make_shared<SubsetDataset>(train, split.train);
  }
  const int64_t global_batch = static_cast<int64_t>(world_size) * data.batch_size();
  out << "data.train: " << train->size() << " samples; global batch " << world_size << " ranks x "
      << data.batch_size() << " = " << global_batch << "\n";
  if (!data.has_buckets()) {
    const DistributedSampler sampler(static_cast<int64_t>(train->size()), data.batch_size(), 0, world_size, false, 0);
    out << "no buckets: every image resized and cropped to " << data.transforms().resolution() << "x"
        << data.transforms().resolution() << ", " << sampler.batches_per_epoch() << " micro-batches per epoch per rank\n";
    return;
  }
  const BucketTable table(data.buckets(), data.transforms().resolution());
  const BucketPlan plan =
      plan_buckets(*train, table, data.bad_data().max_image_pixels(), data.num_workers(), 0, 1, nullptr);
  for (const UnreadableSample& bad : plan.unreadable) out << "unreadable sample " << bad.index << ": " << bad.message << "\n";
  out << format_bucket_report(plan, global_batch);
  if (!data.buckets().report_csv().empty()) {
    const fs::path folder = resolve_config_path(loaded.base_dir, config.run().output_dir());
    fs::create_directories(folder);
    const std::string path = (folder / data.buckets().report_csv()).string();
    write_file_atomic(path, bucket_report_csv(plan, global_batch));
    out << "bucket report written to " << path << "\n";
  }
}

}  // namespace sdtrain
