#pragma once
/// The one table of names between the original CompVis/LDM layout of Stable Diffusion (v1, 2.x
/// and SDXL's UNet) and the diffusers layout, for the UNet, the VAE and the CLIP text encoder. Rows are generated from a
/// layout (number of levels, resnets per level, which levels have attention) that is inferred
/// from the tensor names themselves, so tiny test models and SD v1 share the same code.
/// Names here are relative to a component: the UNet's original names without
/// "model.diffusion_model.", the VAE's without "first_stage_model.".
#include <map>
#include <string>
#include <unordered_map>
#include <vector>

#include <torch/torch.h>

namespace sdtrain {

/// How the part of a name after a row's prefix maps.
enum class NameRowKind {
  kSame,          ///< unchanged (".weight", ".bias"; whole transformer blocks)
  kUNetResnet,    ///< in_layers.0<->norm1, in_layers.2<->conv1, emb_layers.1<->time_emb_proj,
                  ///< out_layers.0<->norm2, out_layers.3<->conv2, skip_connection<->conv_shortcut
  kVaeResnet,     ///< nin_shortcut<->conv_shortcut, the rest unchanged
  kVaeAttention,  ///< norm<->group_norm, q/k/v<->to_q/to_k/to_v, proj_out<->to_out.0; 1x1 conv
                  ///< weights [C,C,1,1] (original) <-> linear weights [C,C] (diffusers)
};

/// One row: a module prefix in each layout.
struct NameRow {
  std::string original;
  std::string diffusers;
  NameRowKind kind = NameRowKind::kSame;
};

/// The shape of a UNet2DConditionModel / LDM UNetModel as far as names are concerned.
struct UNetLayout {
  int levels = 0;                    ///< number of down (and up) blocks
  int layers_per_block = 0;          ///< resnets per down block (up blocks have one more)
  std::vector<bool> down_attention;  ///< per down block: has cross-attention transformers
  std::vector<bool> up_attention;    ///< per up block (diffusers order: deepest first)
  bool mid_attention = true;         ///< the mid block has a transformer between its resnets
  /// SDXL's additional embedding of pooled text and sizes: original label_emb.0.0 / label_emb.0.2
  /// <-> diffusers add_embedding.linear_1 / linear_2.
  bool text_time_embedding = false;
};

/// The shape of an AutoencoderKL / LDM autoencoder as far as names are concerned.
struct VaeLayout {
  int levels = 0;            ///< encoder down blocks == decoder up blocks
  int layers_per_block = 0;  ///< encoder resnets per block (decoder blocks have one more)
};

/// Which naming a set of names uses.
enum class NameLayout { kOriginal, kDiffusers };

/// Infers the layout from component-relative names. Throws FormatError (naming `source`) when
/// the names hold no UNet / VAE in that layout.
UNetLayout infer_unet_layout(const std::vector<std::string>& names, NameLayout layout, const std::string& source);
VaeLayout infer_vae_layout(const std::vector<std::string>& names, NameLayout layout, const std::string& source);

/// The rows for a layout (every module prefix of the component).
std::vector<NameRow> unet_name_rows(const UNetLayout& layout);
std::vector<NameRow> vae_name_rows(const VaeLayout& layout);

/// Name -> tensor (ordered, so outputs are deterministic).
using NamedTensors = std::map<std::string, torch::Tensor>;

/// The result of renaming one component.
struct RenameResult {
  NamedTensors tensors;                 ///< renamed (and, for VAE attention, reshaped) tensors
  std::vector<std::string> unmatched;   ///< input names no row maps (source naming)
  std::vector<std::string> empty_rows;  ///< target-layout prefixes of rows no input name matched
};

/// Renames every tensor of one component from `from` naming to the other through `rows`.
RenameResult rename_component(const NamedTensors& input, const std::vector<NameRow>& rows, NameLayout from);

/// CLIP text encoder. Original: "transformer.text_model.X" (or, in older checkpoints,
/// "transformer.X") relative to "cond_stage_model."; diffusers/transformers: "text_model.X".
/// The "embeddings.position_ids" buffer is dropped (it is a constant arange).
RenameResult clip_original_to_diffusers(const NamedTensors& input);
/// Diffusers -> original ("transformer.text_model.X"); adds embeddings.position_ids (int64
/// [1, max_positions]) as the original checkpoints carry it.
RenameResult clip_diffusers_to_original(const NamedTensors& input);

/// The EMA key the LDM/Lightning EMA callback stores for an original UNet key
/// "model.diffusion_model.a.b.c": "model_ema.diffusion_modelabc" (dots after the first removed).
std::string ldm_ema_key(const std::string& full_original_unet_key);

}  // namespace sdtrain
