#pragma once
/// The stable_diffusion model's caches of its frozen encoders (SdCacheOptions in
/// proto/stable_diffusion.proto): autoencoder posterior moments per (image, transform plan) and
/// CLIP text embeddings per caption.
///
/// Why moments and not latents: a latent is a sample of the posterior, drawn every step from the
/// sample's own seed (Batch::seeds). Caching the posterior's parameters (mean and clamped
/// log-variance, exactly the tensors DiagonalGaussian holds) keeps that draw, so a run with the
/// cache performs the same computation as a run without it: the only differences are the ones a
/// different encoder batch composition makes in the last bits of the encoder's outputs.
///
/// Keys: every input the cached value is a function of.
///   latents: the image (dataset key + SHA-256 of the file, PixelsOrigin::source), the transform
///            plan actually applied (resolution, interpolation, resized size, crop window, flip:
///            PixelsOrigin::transform), the autoencoder's weights (module_fingerprint) and the
///            precision the encoder runs in (autocast dtype): two entries per image with flips.
///   text:    the caption string (the empty caption of caption dropout included), the text
///            encoder's weights and the precision.
/// A change to any of them is a new key, so an entry made from other data, weights or settings is
/// never used; on disk the old files simply stay unused (delete the folder to reclaim the space).
#include <atomic>
#include <cstdint>
#include <memory>
#include <string>

#include <torch/torch.h>

#include "framework/data/tensor_cache.h"
#include "sdtrain/pixel_cache.h"

namespace sdtrain {

/// SHA-256 over a module's parameters and buffers (each one's name, dtype, shape and bytes), in
/// registration order: the identity of frozen weights in cache keys, whatever file (or random
/// initialisation) they came from. Reads every tensor once (about a second for SD v1's VAE).
std::string module_fingerprint(torch::nn::Module& module);

/// The precision tag of the autocast state the current thread runs `device`'s ops in: "fp32" when
/// autocast is off for its device type, else the autocast dtype ("bf16", "fp16").
std::string autocast_tag(const torch::Device& device);

/// Cache statistics, counted by the model as it assembles a training batch.
struct SdCacheCounts {
  int64_t latent_hits = 0;         ///< samples whose moments came from the cache (no encoder run)
  int64_t latent_misses = 0;       ///< samples encoded and stored
  int64_t latent_uncacheable = 0;  ///< samples encoded and not stored (random crop with a choice)
  int64_t text_hits = 0;           ///< captions taken from the cache (or encoded earlier in the batch)
  int64_t text_misses = 0;         ///< distinct captions encoded and stored
};

/// Posterior moments [2C, h, w] by PixelsOrigin. The data loader asks it before decoding.
class SdLatentCache : public PixelCache {
 public:
  /// dir "" = in memory (at most max_memory_bytes, 0: no limit); else moments live in
  /// <dir>/latents. `vae` is the autoencoder's module_fingerprint, `precision` the autocast_tag
  /// the encoder will run under.
  SdLatentCache(const std::string& dir, std::string vae, std::string precision, int64_t max_memory_bytes = 0);
  /// Thread-safe; undefined unless origin.deterministic and an entry exists.
  torch::Tensor find(const PixelsOrigin& origin) const override;
  /// Stores one sample's moments (copied to the CPU). Only for deterministic origins.
  void store(const PixelsOrigin& origin, const torch::Tensor& moments);
  const std::string& precision() const { return precision_; }
  const TensorCache& storage() const { return storage_; }
  /// The cache key of `origin` (for tests: TensorCache::path_for).
  std::string key(const PixelsOrigin& origin) const;

 private:
  std::string vae_;
  std::string precision_;
  TensorCache storage_;
};

/// Text encoder outputs [77, hidden] by caption.
class SdTextCache {
 public:
  /// dir "" = in memory (at most max_memory_bytes, 0: no limit); else embeddings live in
  /// <dir>/text_embeddings.
  SdTextCache(const std::string& dir, std::string text_encoder, std::string precision, int64_t max_memory_bytes = 0);
  torch::Tensor find(const std::string& caption) const;
  void store(const std::string& caption, const torch::Tensor& embedding);
  const std::string& precision() const { return precision_; }
  const TensorCache& storage() const { return storage_; }
  std::string key(const std::string& caption) const;

 private:
  std::string text_encoder_;
  std::string precision_;
  TensorCache storage_;
};

}  // namespace sdtrain
