#pragma once
/// The dataset plugin interface: random access to captioned images, nothing else.
///
/// Decoding, transforms, shuffling, sharding by rank, batching, prefetching and the bad-data policy
/// are the framework's (framework/data), so every dataset plugin gets them for free.
#include <cstddef>
#include <string>
#include <vector>

#include "sdtrain/image.h"

namespace sdtrain {

/// One example as a dataset returns it: either encoded image bytes (JPEG/PNG/WebP, decoded by the
/// framework's workers) or an already decoded image, plus its caption.
struct Sample {
  /// Stable identity of the example (e.g. its path relative to the dataset root). Used in logs,
  /// as the cache key for latents, and to name the sample in bad-data messages.
  std::string key;
  /// Where the example lives, for messages about it: the file's full path for file-based
  /// datasets, so a user can find a bad file. Empty: messages use `key`.
  std::string location;
  /// The caption (may be empty; text-only datasets carry only this).
  std::string caption;
  /// Encoded image file contents; empty when `image` is set or the dataset is text only.
  std::string encoded;
  /// A decoded image; empty when `encoded` is set or the dataset is text only.
  Image image;
};

/// A random-access dataset. Implementations must be safe to call `get` from several threads
/// at once (the framework's workers do).
class Dataset {
 public:
  virtual ~Dataset() = default;
  /// Number of examples; constant for the object's lifetime.
  virtual std::size_t size() const = 0;
  /// Example `index` (0 <= index < size()). Throws sdtrain::DataError naming the file when the
  /// example cannot be read; the framework then applies the bad-data policy.
  virtual Sample get(std::size_t index) const = 0;
  /// Optional: for a dataset stored in shards that are cheap to read in order and dear to read
  /// at random (tar files, Parquet row groups), where each shard's examples end: ascending, the
  /// last equal to size(); examples [end(s-1), end(s)) form shard s. The framework then shuffles
  /// shard by shard through a bounded buffer (data.shuffle_buffer) instead of over the whole
  /// dataset, so that a worker reads a few shards at a time. Empty (the default): no shards.
  virtual std::vector<std::size_t> shard_ends() const { return {}; }
};

}  // namespace sdtrain
