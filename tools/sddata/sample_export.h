#pragma once
/// sddata's `list` and `convert`: every sample of a dataset, as JSON lines or written out in
/// another layout, with the image bytes and captions unchanged.
#include <cstdint>
#include <ostream>
#include <string>
#include <vector>

#include "sdtrain/dataset.h"

namespace sdtrain {

/// One JSON object per sample, in dataset order: {"key", "caption", "bytes" (the image's size),
/// "sha256" (of the image bytes), "format" (jpeg, png, webp or unknown)}; a sample whose get()
/// fails gives {"key", "error"}. Returns the number of such failures.
int64_t list_samples(const Dataset& dataset, std::ostream& out);

struct ConvertOptions {
  std::string to;                ///< "image_folder", "webdataset" or "parquet"
  int64_t shard_size = 1000;     ///< samples per tar shard or Parquet file
  int64_t rows_per_group = 100;  ///< Parquet rows per row group (datasets' choice for images)
};

struct ConvertReport {
  int64_t written = 0;
  std::vector<std::string> files;    ///< what was written, in order
  std::vector<std::string> skipped;  ///< "KEY: why", for samples that failed or are not images
};

/// Throws ConfigError when `options` or `out` would make convert_dataset fail before it reads
/// anything (an unknown layout, a size below 1, an `out` that exists and is not an empty folder),
/// so that a long read is not wasted on them.
void check_convert_target(const std::string& out, const ConvertOptions& options);

/// Writes `dataset` to the folder `out` (created; it must not exist or be empty) in `options.to`'s
/// layout. Sample i (of those written) is named by its number, %08d, with the extension of its
/// image format: image_folder writes images/NNNNNNNN.EXT and metadata.jsonl {file_name, text};
/// webdataset writes train-SSSSS.tar with members NNNNNNNN.EXT and NNNNNNNN.txt; parquet writes
/// train-SSSSS-of-TTTTT.parquet (datasets' schema, parquet_table.h). Image bytes and captions
/// are copied unchanged. Samples that cannot be read or whose bytes are not a JPEG, PNG or WebP
/// image are skipped and reported. Every file appears complete or not at all. Throws ConfigError
/// for a bad `out` or `options`, DataError when writing fails.
ConvertReport convert_dataset(const Dataset& dataset, const std::string& out, const ConvertOptions& options);

}  // namespace sdtrain
