#pragma once
/// One pass over a dataset's samples without training: each image's size from its header (or,
/// to verify, the whole image decoded), whether its caption is empty, and why a sample cannot be
/// read. What the bucket plan and `sddata inspect` / `sddata verify` are made of.
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "sdtrain/dataset.h"

namespace sdtrain {

/// The width and height of `sample`'s image: the decoded image's, or read from the encoded
/// file's header; only when the header reader refuses it is the file decoded (the image is then
/// left in sample.image). Throws DataError naming `name` for a sample without an image or one
/// that cannot be read.
std::pair<int, int> sample_image_size(Sample& sample, const std::string& name, int64_t max_pixels);

/// What reading one sample told.
struct SampleScan {
  bool scanned = false;        ///< false for the samples another rank reads
  std::string key;             ///< Sample::key, or "#<index>" when get() failed without one
  int width = 0;               ///< 0 when unreadable
  int height = 0;
  bool empty_caption = false;
  std::string error;           ///< the DataError's message; "" when the sample is readable
};

struct ScanOptions {
  int threads = 0;             ///< worker threads (0: the calling thread)
  int rank = 0;                ///< this rank reads the samples i with i mod world_size == rank
  int world_size = 1;
  int64_t max_pixels = 0;      ///< larger images count as unreadable (0: no limit)
  bool decode = false;         ///< decode every image in full (verify), not only its header
};

/// Reads `dataset`'s samples as `options` says; entry i is sample i. A sample whose get(),
/// header or decoding throws DataError is recorded with the message (other exceptions propagate).
std::vector<SampleScan> scan_samples(const Dataset& dataset, const ScanOptions& options);

}  // namespace sdtrain
