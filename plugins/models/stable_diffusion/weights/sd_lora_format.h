#pragma once
/// LoRA / LoCon adapter files for SD v1, 2.x and SDXL: the kohya/A1111 layout sdtrain uses internally, the
/// diffusers/PEFT layout (`pytorch_lora_weights.safetensors`), LyCORIS' LoCon keys, and baking an
/// adapter into the base weights. Policy and key layouts: docs/lora-formats.md.
///
/// Internal naming (kohya's), per wrapped module "<lora name>" (kohya_lora_name):
///   "<lora name>.lora_down.weight"  [rank, in] (Linear) or [rank, in, kh, kw] (Conv2d)
///   "<lora name>.lora_up.weight"    [out, rank] (Linear) or [out, rank, 1, 1] (Conv2d)
///   "<lora name>.alpha"             0-d float32
/// The module's weight changes by multiplier · alpha / rank · up·down (a conv's up is a 1×1 conv
/// after the k×k down conv, so its delta is up[:, :, 0, 0] · down over the flattened kernel).
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include <torch/torch.h>

#include "plugins/models/stable_diffusion/txt2img.h"

namespace sdtrain {

/// kohya's module name in SD v1 / 2.x (one text encoder): component "unet" → "lora_unet_" +
/// `module_path` with '.' replaced by '_'; "text_encoder" → "lora_te_" + the same. `module_path`
/// is the diffusers / transformers module name
/// ("down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q",
/// "text_model.encoder.layers.0.self_attn.q_proj"). Throws std::invalid_argument for another
/// component. SDXL's names are not a function of the path alone: see lora_targets.
std::string kohya_lora_name(const std::string& component, const std::string& module_path);

/// An adapter in the internal naming above. `metadata` is the safetensors header's
/// "__metadata__" (kohya's ss_* training keys and the like), written back as given.
struct LoraFile {
  std::map<std::string, torch::Tensor> tensors;
  std::map<std::string, std::string> metadata;
};

/// A module an adapter may wrap.
struct LoraTarget {
  std::string component;              ///< "unet", "text_encoder" or (SDXL) "text_encoder_2"
  std::string module_path;            ///< diffusers / transformers module name (dots)
  bool conv = false;                  ///< Conv2d (else Linear)
  std::vector<int64_t> weight_shape;  ///< [out, in] or [out, in, kh, kw]
};

/// Every Linear and Conv2d of the UNet and of the text encoder(s) (the VAE is never adapted),
/// keyed by kohya's module name for the model's family:
///   - SD v1 / 2.x: kohya_lora_name;
///   - SDXL (networks.text_encoder_2 set), as sd-scripts' sdxl_train_network names them and A1111,
///     ComfyUI and diffusers load them: the UNet's modules by their original (LDM / SGM) paths,
///     "lora_unet_input_blocks_4_1_transformer_blocks_0_attn1_to_q" (diffusers'
///     down_blocks.1.attentions.0...), and the encoders "lora_te1_<path>" / "lora_te2_<path>".
/// A null network contributes nothing. Submodules whose name has a part starting with "lora_" are
/// an adapter's own layers, not targets, and are skipped.
std::map<std::string, LoraTarget> lora_targets(const SdNetworks& networks);

/// The targets' names by component and module path: index[component][module_path] = name.
using LoraNameIndex = std::map<std::string, std::map<std::string, std::string>>;
LoraNameIndex lora_name_index(const std::map<std::string, LoraTarget>& targets);

enum class LoraFormat { kKohya, kPeft };

/// "kohya" or "peft".
const char* lora_format_name(LoraFormat format);
/// Parses "kohya" or "peft"; ConfigError naming both otherwise.
LoraFormat parse_lora_format(const std::string& name);

/// Reads an adapter .safetensors file and converts it to the internal naming. Accepted layouts
/// (detected from the keys):
///   - kohya / A1111 / LyCORIS LoCon: "lora_unet_*", "lora_te_*" (SDXL: "lora_te1_*", "lora_te2_*",
///     and the UNet's modules by their LDM paths or, as some trainers write them, by diffusers')
///     (and LyCORIS' "lycoris_*" for a
///     network made directly on the UNet or the text encoder); ".lora_down.weight",
///     ".lora_up.weight", ".alpha" (absent: alpha = rank, as kohya loads old files); a LyCORIS
///     Tucker conv (".lora_mid.weight") is folded into an equivalent k×k down;
///   - diffusers / PEFT: "unet.<path>.lora_A.weight" / ".lora_B.weight" and
///     "text_encoder.<path>..." (with or without "text_model."; SDXL: "text_encoder_2.<path>..."
///     too); alphas from the header's
///     "lora_adapter_metadata" (peft's LoraConfig as diffusers' save_lora_weights stores it:
///     lora_alpha, alpha_pattern, r, rank_pattern, use_rslora); without it alpha = rank, as
///     diffusers loads such files.
/// Throws FormatError naming the file and: the first key (in sorted order) that fits no target
/// (e.g. an SDXL adapter given to an SD v1 model, DoRA's dora_scale), a down/up/alpha missing or of a shape the
/// target's weight does not take (in/out, kernel, the same rank in down and up), a non-finite
/// value (naming the key), or a file holding no adapter at all.
LoraFile read_lora_file(const std::string& path, const std::map<std::string, LoraTarget>& targets);

/// Writes `lora` at `path` (atomically; an existing `path` is refused) after checking it as
/// read_lora_file checks a file:
///   - kKohya: the internal names, alphas and `lora.metadata` as given;
///   - kPeft: what diffusers' save_lora_weights writes: "unet.<path>.lora_A.weight" (= down),
///     ".lora_B.weight" (= up), "text_encoder.text_model.<path>..." for the text encoder
///     ("text_encoder_2.text_model.<path>..." for SDXL's second), and the
///     header's "format": "pt" and "lora_adapter_metadata" (the per-component LoraConfig fields:
///     r, lora_alpha, rank_pattern and alpha_pattern for the modules that differ from the most
///     common rank / alpha, target_modules), so `pipe.load_lora_weights` rebuilds every module with
///     its own rank and alpha; the other `lora.metadata` entries are kept beside them.
/// kohya → PEFT → kohya gives back the same tensors and alphas, bit for bit.
void write_lora_file(const LoraFile& lora, const std::string& path, LoraFormat format,
                     const std::map<std::string, LoraTarget>& targets);

/// Bakes `lora` into the networks' weights: W += multiplier · alpha / rank · up·down, computed in
/// float32 on the weight's device and cast back to the weight's dtype. The adapter is checked as
/// read_lora_file checks a file first, so a bad adapter changes nothing.
void merge_lora(SdNetworks& networks, const LoraFile& lora, double multiplier,
                const std::map<std::string, LoraTarget>& targets);

/// An adapter named on a command line: "FILE" or "FILE:WEIGHT" (weight default 1.0). The text
/// after the last ':' is a weight only when all of it reads as a number, so a path holding ':'
/// still names its file.
struct LoraSpec {
  std::string path;
  double weight = 1.0;
};
/// Parses `text` as above; ConfigError naming `option` for an empty path or a non-finite weight.
LoraSpec parse_lora_spec(const std::string& text, const std::string& option);
/// parse_lora_spec, and the file must exist: ConfigError "no such file PATH", or, when the text
/// after the last ':' is no number but the text before it is a file, that the weight is not a
/// number (so a typo in the weight is not reported as a missing file).
LoraSpec parse_lora_file_spec(const std::string& text, const std::string& option);

}  // namespace sdtrain
