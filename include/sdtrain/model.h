#pragma once
/// The model plugin interface: what the trainer needs from a trainable diffusion model.
#include <algorithm>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <google/protobuf/message.h>
#include <torch/torch.h>

#include "sdtrain/errors.h"
#include "sdtrain/image.h"
#include "sdtrain/pixel_cache.h"

namespace sdtrain {

/// One micro-batch as the data pipeline delivers it.
struct Batch {
  /// float32 [N, 3, H, W] in [-1, 1], RGB; on the CPU (pinned when CUDA is used). N is the batch
  /// size B, except when the loader found samples in the model's PixelCache: then `pixels` holds
  /// only the samples whose `cached` entry is undefined, in batch order (N may be 0).
  torch::Tensor pixels;
  /// One caption per image (after caption dropout).
  std::vector<std::string> captions;
  /// The samples' keys (Sample::key), for caching and logs.
  std::vector<std::string> keys;
  /// One seed per sample for all of that sample's randomness in the loss (noise, timestep,
  /// posterior sample). Derived from (run seed, epoch, dataset index), so a sample's loss does not
  /// depend on how samples are spread over ranks, micro-batches or a resume.
  std::vector<std::uint64_t> seeds;
  /// Per sample, where its pixels came from (image content and the transform plan applied,
  /// flip included), so a model can cache what it computes from them. Filled by the training
  /// data loader; empty for batches made elsewhere (validation loss), which models do not cache.
  std::vector<PixelsOrigin> origins;
  /// Per sample, the tensor the model's PixelCache returned for origins[i] (then the image was
  /// not decoded and has no row in `pixels`), or undefined. Empty when no sample was found.
  std::vector<torch::Tensor> cached;
  /// DreamBooth's prior preservation (data.prior_preservation): the last `prior_samples` rows are
  /// class samples, row N - prior_samples + j drawn beside instance row j; 0: every row is an
  /// ordinary sample. The batch loss is then reduce_sample_losses's formula with
  /// prior_loss_weight.
  std::int64_t prior_samples = 0;
  double prior_loss_weight = 1.0;
};

/// The micro-batch loss from each sample's loss (`per_sample`, [N]): their mean, or, for a batch
/// with prior samples, diffusers' train_dreambooth.py formula: the mean over the instance rows
/// plus batch.prior_loss_weight times the mean over the class rows.
inline torch::Tensor reduce_sample_losses(const torch::Tensor& per_sample, const Batch& batch) {
  if (batch.prior_samples == 0) return per_sample.mean();
  const std::int64_t instances = per_sample.size(0) - batch.prior_samples;
  TORCH_CHECK(instances > 0, "a batch with ", batch.prior_samples, " prior samples has only ", per_sample.size(0),
              " rows");
  return per_sample.narrow(0, 0, instances).mean() +
         batch.prior_loss_weight * per_sample.narrow(0, instances, batch.prior_samples).mean();
}

/// Pixels [N, 3, H, W] in [-1, 1] (any float dtype and device) as 8-bit RGB images: x / 2 + 0.5
/// clamped to [0, 1], times 255, rounded (diffusers' numpy_to_pil), so that an 8-bit image the
/// data pipeline scaled to [-1, 1] comes back byte for byte.
inline std::vector<Image> images_from_pixels(const torch::Tensor& pixels) {
  const torch::Tensor bytes = ((pixels.detach().to(torch::kFloat32) / 2 + 0.5).clamp(0, 1) * 255)
                                  .round()
                                  .to(torch::kUInt8)
                                  .permute({0, 2, 3, 1})
                                  .contiguous()
                                  .to(torch::kCPU);
  std::vector<Image> images;
  for (int64_t i = 0; i < bytes.size(0); ++i) {
    Image image;
    image.height = static_cast<int>(bytes.size(1));
    image.width = static_cast<int>(bytes.size(2));
    image.channels = 3;
    const auto* data = bytes[i].data_ptr<std::uint8_t>();
    image.pixels.assign(data, data + bytes[i].numel());
    images.push_back(std::move(image));
  }
  return images;
}

/// A training micro-batch drawn as images, for the image logger's train split (the LDM
/// ImageLogger's "inputs" and "reconstruction" grids).
struct BatchPreview {
  /// The batch's image size in pixels (the training resolution, or the batch's bucket).
  int height = 0;
  int width = 0;
  /// Per previewed sample, its pixels as trained on (images_from_pixels); an empty Image for a
  /// sample the data loader served from the model's PixelCache (its image was not decoded).
  std::vector<Image> inputs;
  /// Per previewed sample, the model's first stage's reconstruction of it (an autoencoder's
  /// decoding of the posterior mean); empty when the model has no first stage.
  std::vector<Image> reconstructions;
};

/// Settings for drawing validation samples.
struct SampleRequest {
  std::vector<std::string> prompts;
  std::string negative_prompt;      ///< the unconditional label ("" = empty prompt)
  int height = 512;                 ///< pixels, multiple of 8
  int width = 512;                  ///< pixels, multiple of 8
  int steps = 50;                   ///< sampler steps
  double guidance_scale = 7.5;      ///< classifier-free guidance; 1 disables the uncond. pass
  /// Rescales the guided prediction towards the conditional one's standard deviation (Lin et al.
  /// 2023, sec. 3.4; diffusers' guidance_rescale), in [0, 1]; 0 = off. Used with guidance only.
  double guidance_rescale = 0.0;
  std::string sampler = "ddim";     ///< a registered scheduler name
  /// The sampler's own options message (e.g. DdimSchedulerOptions with its eta); null: the
  /// sampler's defaults.
  std::shared_ptr<const google::protobuf::Message> sampler_options;
  std::uint64_t seed = 42;          ///< initial latents (and ancestral noise) come from this
};

/// A named group of trained parameters with optimizer settings of its own (`unet`,
/// `text_encoder`, `lora_unet`, ...), as torch.optim's param_groups.
struct ParameterGroup {
  std::string name;
  /// The parameters of Model::trainable_module() whose name starts with this prefix and that no
  /// earlier group took ("" = every parameter not taken yet).
  std::string prefix;
  /// Multiplies the scheduled learning rate.
  double lr_factor = 1.0;
  /// AdamW's decoupled weight decay for the group; negative = optimizer.weight_decay.
  double weight_decay = -1.0;
};

/// A trainable model. The trainer owns the optimisation; the model owns the loss.
class Model {
 public:
  virtual ~Model() = default;

  /// The module whose parameters are optimised (frozen parts are not inside it). Its
  /// named_parameters() name the weights in checkpoints.
  virtual torch::nn::Module& trainable_module() = 0;

  /// How the trained parameters are grouped for the optimizer, in order: every parameter of
  /// trainable_module() must fall into exactly one group, and every group must hold at least one
  /// (ConfigError naming it otherwise). The default is one group, "trainable", of everything.
  virtual std::vector<ParameterGroup> parameter_groups() const { return {ParameterGroup{"trainable", ""}}; }

  /// Facts a checkpoint of this model records and a resume must find equal, by name (e.g. the
  /// fingerprint of the frozen base that adapters were trained on). The trainer refuses to resume
  /// a checkpoint whose facts differ, naming the fact and both values. Empty: nothing to check.
  virtual std::map<std::string, std::string> checkpoint_identity() const { return {}; }

  /// Moves every part of the model to `device` (frozen parts may keep another dtype).
  virtual void to(const torch::Device& device) = 0;

  /// The loss of one micro-batch: a scalar that requires grad, the mean over the batch of each
  /// sample's loss (reduce_sample_losses, which also handles prior samples). Each sample's
  /// randomness (noise, timestep, posterior sample) is drawn from a generator seeded with
  /// batch.seeds[i], so results do not depend on batch composition.
  virtual torch::Tensor training_loss(const Batch& batch) = 0;

  /// Whether training_loss honours Batch::prior_samples (reduces through reduce_sample_losses);
  /// the trainer refuses data.prior_preservation for a model that does not.
  virtual bool supports_prior_preservation() const { return false; }

  /// The model's per-sample cache, which the data loader consults before decoding an image
  /// (pixel_cache.h); null when the model caches nothing per sample. Called once, before training.
  virtual std::shared_ptr<const PixelCache> pixel_cache() const { return nullptr; }

  /// Weights to start the EMA from instead of the trained weights, by trainable_module()
  /// parameter name (e.g. the EMA copy inside a pretrained checkpoint). Empty: start from the
  /// trained weights. Called once, after to().
  virtual std::map<std::string, torch::Tensor> ema_start_weights() { return {}; }

  /// The update count the EMA continues from when it starts from ema_start_weights() (e.g. the
  /// file's model_ema.num_updates, which LitEma keeps as a buffer and a non-strict load restores),
  /// so that its warm-up min(decay, (1 + n) / (10 + n)) goes on where that EMA left it instead of
  /// starting over. 0: a fresh EMA. Called once, with ema_start_weights().
  virtual std::int64_t ema_start_updates() const { return 0; }

  /// Called on every rank after this rank trained its last micro-batch of training epoch `epoch`
  /// (0-based), e.g. to report per-epoch statistics.
  virtual void on_train_epoch_end(std::int64_t epoch) {}

  /// The first min(count, batch size) samples of a training micro-batch (as training_loss
  /// received it) as images. Called on one rank at a time: must not call collectives. The
  /// default: the inputs from batch.pixels, no reconstructions, and the size of batch.pixels
  /// (0 x 0 when every previewed sample came from the PixelCache).
  virtual BatchPreview preview_batch(const Batch& batch, int count) {
    BatchPreview preview;
    const auto samples = static_cast<int>(std::min<std::size_t>(static_cast<std::size_t>(std::max(count, 0)),
                                                                batch.seeds.size()));
    if (batch.pixels.defined() && batch.pixels.dim() == 4) {
      preview.height = static_cast<int>(batch.pixels.size(2));
      preview.width = static_cast<int>(batch.pixels.size(3));
    }
    // batch.pixels holds rows only for samples without a cached entry, in sample order.
    const auto is_cached = [&](int i) {
      return !batch.cached.empty() && batch.cached[static_cast<std::size_t>(i)].defined();
    };
    int64_t rows = 0;
    for (int i = 0; i < samples; ++i) rows += is_cached(i) ? 0 : 1;
    std::vector<Image> decoded = rows > 0 ? images_from_pixels(batch.pixels.narrow(0, 0, rows)) : std::vector<Image>{};
    std::size_t next = 0;
    for (int i = 0; i < samples; ++i) preview.inputs.push_back(is_cached(i) ? Image{} : std::move(decoded[next++]));
    return preview;
  }

  /// One RGB image per prompt, current trainable weights. No prompts: no image, the request only checked.
  virtual std::vector<Image> sample(const SampleRequest& request) = 0;

  /// Why export_pretrained() cannot work for this model as configured; "" when it can. The
  /// trainer asks before training (final_export), so a run does not fail at its very end.
  virtual std::string export_unavailable_reason() const { return "this model type has no export"; }

  /// Writes the model with its current weights (trainable_module() as it is at the call, frozen
  /// parts as loaded) to `folder` in the model's published format, the one its ecosystem loads
  /// (stable_diffusion: a diffusers folder for StableDiffusionPipeline.from_pretrained).
  /// Contract: called on one rank only, so it must not call collectives; `folder` is complete or
  /// absent (written into a temporary sibling and renamed into place); an existing `folder` is
  /// never overwritten (FormatError naming it). The trainer swaps the EMA weights in first when
  /// final_export.use_ema. Throws ConfigError with export_unavailable_reason() by default.
  virtual void export_pretrained(const std::string& folder) {
    throw ConfigError("final_export: " + export_unavailable_reason() + " (" + folder + ")");
  }
};

}  // namespace sdtrain
