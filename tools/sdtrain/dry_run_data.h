#pragma once
/// `sdtrain --dry-run-data`: what the training set would give, without building the model or
/// training.
#include <ostream>

#include "framework/config/config_loader.h"

namespace sdtrain {

/// Builds data.train (less a data.validation_loss held-out fraction, as training does), reads
/// every image's size and writes to `out` the sample count and, with data.buckets, the bucket
/// report for a global batch of `world_size` x data.batch_size (and its CSV beside the log when
/// data.buckets.report_csv is set, in run.output_dir); without buckets, the micro-batches per
/// epoch at transforms.resolution. Throws ConfigError / DataError as training would.
void dry_run_data(const LoadedConfig& loaded, int world_size, std::ostream& out);

}  // namespace sdtrain
