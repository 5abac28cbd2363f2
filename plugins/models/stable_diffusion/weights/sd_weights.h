#pragma once
/// Stable Diffusion v1 and 2.x weights in diffusers naming, and their conversion from/to the
/// original single state dict (CompVis/LDM and Stability's SD 2: model.diffusion_model.*,
/// first_stage_model.*, cond_stage_model.transformer.* (CLIP) or cond_stage_model.model.*
/// (OpenCLIP), model_ema.*).
#include <map>
#include <string>
#include <vector>

#include "plugins/models/stable_diffusion/weights/sd_name_table.h"

namespace sdtrain {

/// The weights of one SD v1, 2.x or SDXL pipeline, each component keyed by its diffusers /
/// transformers names (the keys the sdtrain modules use: unet "conv_in.weight", vae
/// "encoder.conv_in.weight", text encoder "text_model.embeddings.token_embedding.weight").
struct SdWeights {
  NamedTensors unet;
  NamedTensors vae;
  NamedTensors text_encoder;
  /// SDXL's second text encoder (OpenCLIP ViT-bigG as CLIPTextModelWithProjection: "text_model.*"
  /// and "text_projection.weight"); empty for SD v1 and 2.x. Its presence selects SDXL's original
  /// layout (conditioner.embedders.0/1) and StableDiffusionXLPipeline folders.
  NamedTensors text_encoder_2;
  /// The EMA copy of the UNet (diffusers names) when the source had one and it was not taken as
  /// `unet` (use_ema); empty otherwise.
  NamedTensors unet_ema;
  /// Original-layout tensors outside the three models, kept verbatim for original-layout outputs:
  /// the DDPM schedule buffers (betas, alphas_cumprod, ...), model_ema.decay/num_updates.
  NamedTensors extras;
  /// config.json texts by component ("unet", "vae", "text_encoder", "text_encoder_2",
  /// "scheduler") when the source carried them (a diffusers folder, or a single file written by
  /// sdtrain) or its layout told them (an OpenCLIP text encoder's activation).
  std::map<std::string, std::string> configs;
  /// A diffusers tokenizer folder (vocab.json, merges.txt, ...) to copy into diffusers outputs.
  std::string tokenizer_dir;
  /// The same for SDXL's second tokenizer (tokenizer_2/).
  std::string tokenizer_2_dir;

  bool is_sdxl() const { return !text_encoder_2.empty(); }
};

/// Names at fault, by kind. Every entry names the key in the source's layout.
struct WeightIssues {
  std::vector<std::string> missing;     ///< expected but absent
  std::vector<std::string> unexpected;  ///< present but belonging to nothing
  std::vector<std::string> mismatched;  ///< "name: got [..] expected [..]"
  bool empty() const { return missing.empty() && unexpected.empty() && mismatched.empty(); }
  /// A multi-line description ("missing keys (N): a, b, ..."), empty when there is nothing.
  std::string describe() const;
  void append(const WeightIssues& other);
};

/// Splits an original single state dict into diffusers-named components.
/// With `use_ema` and model_ema.* weights present, `unet` holds the EMA weights (as diffusers'
/// convert_original_stable_diffusion_to_diffusers.py --extract_ema) and unet_ema stays empty;
/// without it the EMA copy goes to unet_ema. `use_ema` without EMA weights is reported as missing
/// EMA keys. Known non-model buffers go to `extras`; anything else is reported as unexpected.
SdWeights sd_weights_from_original(const NamedTensors& state, bool use_ema, const std::string& source,
                                   WeightIssues* issues);

/// The original single state dict: model.diffusion_model.*, first_stage_model.*,
/// cond_stage_model.transformer.text_model.* (+ position_ids) or, for an OpenCLIP text encoder
/// (text_encoder_is_open_clip), cond_stage_model.model.*, model_ema.* when unet_ema is set,
/// and `extras`; for SDXL (is_sdxl) conditioner.embedders.0.transformer.text_model.* and
/// conditioner.embedders.1.model.* in place of cond_stage_model.*. Throws FormatError when a name belongs to no row of the table.
NamedTensors sd_weights_to_original(const SdWeights& weights);

/// Compares a component map with the expected names and shapes (e.g. module_state_dict of a
/// constructed module). Weights that differ from the expected shape only by trailing 1-sized
/// dimensions (1x1 conv <-> linear, as proj_in/proj_out) are reshaped in place and not reported.
WeightIssues match_state_dict(NamedTensors& actual, const std::map<std::string, torch::Tensor>& expected,
                              const std::string& prefix = "");

/// Copies `tensors` (keys "<component>.<name>" or "<name>", as match_state_dict takes them) into
/// `module`: every expected weight must be there with its shape (the extra position_ids buffer
/// older transformers wrote is not a weight). FormatError naming `source`, the component and
/// every missing, unexpected or mis-shaped key otherwise.
void load_component_exactly(torch::nn::Module& module, NamedTensors& tensors, const std::string& component,
                            const std::string& source);

/// Whether the text encoder is OpenCLIP's (SD 2.x): its config says hidden_act "gelu" (OpenAI's
/// CLIP of SD v1 uses quick_gelu). Without a text_encoder config: false.
bool text_encoder_is_open_clip(const SdWeights& weights);

/// The text encoders in the original layout, full names: "cond_stage_model.transformer.text_model.*"
/// (+ position_ids) for CLIP, "cond_stage_model.model.*" (OpenCLIP's names, fused in_proj) for
/// SD 2.x's OpenCLIP, "conditioner.embedders.0.transformer.text_model.*" and
/// "conditioner.embedders.1.model.*" for SDXL's pair. Names with no original counterpart are in
/// `unmatched` as "text_encoder.<name>" / "text_encoder_2.<name>".
RenameResult text_encoders_to_original(const SdWeights& weights);

/// Converts every floating-point tensor of every component (not integer buffers) to `dtype`.
void cast_sd_weights(SdWeights& weights, torch::ScalarType dtype);

}  // namespace sdtrain
