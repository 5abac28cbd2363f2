#include "plugins/models/stable_diffusion/weights/sd_open_clip_names.h"

#include <array>
#include <utility>

#include "framework/util/strings.h"
#include "sdtrain/errors.h"

namespace sdtrain {
namespace {

using NamePair = std::pair<const char*, const char*>;  // (OpenCLIP, transformers)

/// Whole names outside the layers.
constexpr std::array<NamePair, 5> kModelNames = {{
    {"token_embedding.weight", "text_model.embeddings.token_embedding.weight"},
    {"positional_embedding", "text_model.embeddings.position_embedding.weight"},
    {"ln_final.weight", "text_model.final_layer_norm.weight"},
    {"ln_final.bias", "text_model.final_layer_norm.bias"},
    {"text_projection", "text_projection.weight"},
}};

/// Module names inside one layer; ".weight" / ".bias" follow unchanged.
constexpr std::array<NamePair, 5> kLayerModules = {{
    {"ln_1", "layer_norm1"},
    {"ln_2", "layer_norm2"},
    {"attn.out_proj", "self_attn.out_proj"},
    {"mlp.c_fc", "mlp.fc1"},
    {"mlp.c_proj", "mlp.fc2"},
}};

const std::string kOpenClipLayers = "transformer.resblocks.";
const std::string kTransformersLayers = "text_model.encoder.layers.";
const char* const kProjections[] = {"q_proj", "k_proj", "v_proj"};

/// Splits "<prefix>N.<rest>" into N and rest; false when `name` is not a layer name.
bool split_layer(const std::string& name, const std::string& prefix, std::string& index, std::string& rest) {
  if (!starts_with(name, prefix)) return false;
  const std::size_t dot = name.find('.', prefix.size());
  if (dot == std::string::npos) return false;
  index = name.substr(prefix.size(), dot - prefix.size());
  rest = name.substr(dot + 1);
  return !index.empty();
}

/// The other side of a whole-model name or a layer module's name ("" when there is none).
std::string renamed(const std::string& name, bool to_transformers) {
  for (const auto& [open_clip, transformers] : kModelNames) {
    if (name == (to_transformers ? open_clip : transformers)) {
      return to_transformers ? transformers : open_clip;
    }
  }
  std::string index, rest;
  if (!split_layer(name, to_transformers ? kOpenClipLayers : kTransformersLayers, index, rest)) return "";
  for (const auto& [open_clip, transformers] : kLayerModules) {
    const std::string from = std::string(to_transformers ? open_clip : transformers) + ".";
    if (starts_with(rest, from)) {
      const std::string to = to_transformers ? transformers : open_clip;
      return (to_transformers ? kTransformersLayers : kOpenClipLayers) + index + "." + to + "." +
             rest.substr(from.size());
    }
  }
  return "";
}

}  // namespace

RenameResult open_clip_to_transformers(const NamedTensors& input) {
  RenameResult result;
  for (const auto& [name, tensor] : input) {
    std::string index, rest;
    if (split_layer(name, kOpenClipLayers, index, rest) && (rest == "attn.in_proj_weight" || rest == "attn.in_proj_bias")) {
      if (tensor.dim() < 1 || tensor.size(0) % 3 != 0 ||
          (tensor.dim() == 2 && tensor.size(0) != 3 * tensor.size(1))) {
        throw FormatError(name + ": a fused q/k/v projection must have 3 x width rows; got " +
                          std::to_string(tensor.size(0)));
      }
      const std::string suffix = rest == "attn.in_proj_weight" ? ".weight" : ".bias";
      const auto parts = tensor.chunk(3, 0);
      for (int i = 0; i < 3; ++i) {
        result.tensors[kTransformersLayers + index + ".self_attn." + kProjections[i] + suffix] = parts[i];
      }
      continue;
    }
    const std::string target = renamed(name, /*to_transformers=*/true);
    if (target.empty()) {
      result.unmatched.push_back(name);
    } else {
      result.tensors[target] = name == "text_projection" ? tensor.t().contiguous() : tensor;
    }
  }
  return result;
}

RenameResult transformers_to_open_clip(const NamedTensors& input) {
  RenameResult result;
  for (const auto& [name, tensor] : input) {
    if (name == "text_model.embeddings.position_ids") continue;
    std::string index, rest;
    if (split_layer(name, kTransformersLayers, index, rest) && starts_with(rest, "self_attn.") &&
        (ends_with(rest, "_proj.weight") || ends_with(rest, "_proj.bias")) && !starts_with(rest, "self_attn.out_proj")) {
      // The three projections of a layer become one fused tensor, written when q is met.
      if (!starts_with(rest, "self_attn.q_proj.")) continue;
      const std::string suffix = rest.substr(std::string("self_attn.q_proj").size());  // ".weight" / ".bias"
      std::vector<torch::Tensor> parts;
      for (const char* projection : kProjections) {
        const std::string key = kTransformersLayers + index + ".self_attn." + projection + suffix;
        auto it = input.find(key);
        if (it == input.end()) throw FormatError(key + ": missing; OpenCLIP fuses q, k and v into one in_proj");
        parts.push_back(it->second);
      }
      result.tensors[kOpenClipLayers + index + ".attn.in_proj_" + suffix.substr(1)] = torch::cat(parts, 0);
      continue;
    }
    const std::string target = renamed(name, /*to_transformers=*/false);
    if (target.empty()) {
      result.unmatched.push_back(name);
    } else {
      result.tensors[target] = name == "text_projection.weight" ? tensor.t().contiguous() : tensor;
    }
  }
  return result;
}

}  // namespace sdtrain
