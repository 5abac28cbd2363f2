#pragma once
/// What the data loader tells a model about where each sample's pixels came from, and the hook
/// through which the loader asks a model's cache before decoding an image.
///
/// A model may cache what it computes from a sample's pixels alone (stable_diffusion: the
/// autoencoder posterior's moments). The pixels of a sample are a pure function of the image file
/// and the transform plan actually applied (resize, crop window, flip), so the loader describes
/// exactly those two; the model adds what its own computation depends on (its weights, the
/// precision) to form its cache key. The loader asks PixelCache::find before decoding: a hit skips
/// decoding and transforms (where the CPU time goes once the encoder no longer runs) and hands
/// the cached tensor to the model instead of pixels. Data order and per-sample seeds do not change.
#include <string>

#include <torch/torch.h>

namespace sdtrain {

/// Where one training sample's pixels came from (Batch::origins).
struct PixelsOrigin {
  /// The source image: the dataset key and the SHA-256 of the encoded file (or of the decoded
  /// pixels for datasets that return decoded images), "<key>#<sha256>". A changed file therefore
  /// has a new source whatever its name, size or modification time. Set (like `transform`) only
  /// when the model has a pixel cache: hashing every file would otherwise cost for nothing.
  std::string source;
  /// The transform plan applied, complete (resolution, interpolation, antialias, resized size,
  /// crop window, flip): equal descriptions give equal pixels for equal sources.
  std::string transform;
  /// The horizontal flip that was drawn.
  bool flip = false;
  /// True when the transform was fixed once the flip was drawn (crop CENTER, or crop RANDOM on an
  /// image whose resized size equals the resolution), so the same pixels recur in later epochs
  /// and caching them pays. False when a random crop had a choice of window: caching such a
  /// sample would hardly ever hit and would grow without bound, so models do not cache it.
  bool deterministic = false;
  /// The image's size before any resize, and the crop's top-left corner in the resized image as
  /// the sample's pixels show it: for a flipped sample, in the flipped resized image (diffusers'
  /// SDXL training script flips before it crops). What SDXL's micro-conditioning reads
  /// (original_size, crops_coords_top_left; the target size is the batch's). Always filled by the
  /// training data loader, cache or not.
  int original_width = 0;
  int original_height = 0;
  int crop_left = 0;
  int crop_top = 0;
};

/// A model's per-sample cache as the data loader sees it (Model::pixel_cache()).
class PixelCache {
 public:
  virtual ~PixelCache() = default;
  /// The cached tensor for a sample of this origin, or an undefined tensor when there is none (or
  /// origin.deterministic is false). Called from the loader's worker threads, concurrently with
  /// the model's own lookups and stores: implementations must be thread-safe. A hit here is final:
  /// the loader does not decode the image, and the model uses the returned tensor.
  virtual torch::Tensor find(const PixelsOrigin& origin) const = 0;
};

}  // namespace sdtrain
