#pragma once
/// Reading and writing SD v1 and 2.x weights in the three formats: an original single-file .ckpt
/// (Lightning/CompVis, {"state_dict": ...}), an original single-file .safetensors (the layout
/// A1111 and ComfyUI read), and a diffusers folder (model_index.json + unet/ vae/ text_encoder/
/// tokenizer/ scheduler/, loadable by StableDiffusionPipeline.from_pretrained).
#include <string>

#include "plugins/models/stable_diffusion/weights/sd_weights.h"

namespace sdtrain {

enum class SdFormat { kCkpt, kSafetensors, kDiffusers };

/// "ckpt", "safetensors" or "diffusers".
const char* sd_format_name(SdFormat format);
/// Parses a format name; ConfigError listing the three names otherwise.
SdFormat parse_sd_format(const std::string& name);
/// The format of an existing input: a directory -> diffusers (it must hold model_index.json),
/// *.safetensors, *.ckpt/.pt/.pth -> ckpt. FormatError naming the path otherwise.
SdFormat detect_input_format(const std::string& path);
/// The format an output path names: *.ckpt (.pt/.pth), *.safetensors, anything else a folder.
SdFormat output_format_from_name(const std::string& path);

struct SdLoadOptions {
  /// Take the EMA UNet weights as the UNet when the source has them (--extract_ema semantics).
  bool use_ema = false;
  /// Throw FormatError on any missing / unexpected / mismatched key; otherwise they are logged
  /// as a warning (like a non-strict load_state_dict) and the rest loads.
  bool strict = true;
};

/// Loads SD v1 / 2.x weights from any of the three formats (see detect_input_format). Diffusers folders
/// keep their config.json texts in `configs` and their tokenizer folder in `tokenizer_dir`; a
/// text encoder saved without the "text_model." prefix (transformers >= 5.6) and the legacy VAE
/// attention names (query/key/value/proj_attn) are normalised. Single .safetensors files written
/// by sdtrain carry the configs in their metadata. Throws FormatError naming the file (and key).
SdWeights load_sd_weights(const std::string& path, const SdLoadOptions& options = {}, WeightIssues* issues = nullptr);

struct SdSaveOptions {
  /// Cast floating-point tensors to float16 first.
  bool half = false;
};

/// Writes `weights` in `format` at `path`, atomically (files: temporary + rename; folders: a
/// temporary folder renamed into place). An existing `path` is never overwritten (FormatError).
/// Diffusers folders get config.json texts from weights.configs or inferred from shapes
/// (sd_diffusers_config.h), the SD v1 PNDM scheduler config, and the tokenizer: a copy of
/// weights.tokenizer_dir when set, else CLIP's files (sd_tokenizer_files.h) when the text encoder
/// has CLIP's 49408-token vocabulary, else none (model_index.json says so).
void save_sd_weights(const SdWeights& weights, const std::string& path, SdFormat format,
                     const SdSaveOptions& options = {});

}  // namespace sdtrain
