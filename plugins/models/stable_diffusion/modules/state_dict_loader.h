#pragma once
/// Strict state-dict loading for the SD modules: every parameter and buffer of the module must
/// be present with the same shape, and nothing else may be in the map. Tensors are copied into
/// the existing parameters (their dtype, device and memory format are kept).
#include <map>
#include <string>

#include <torch/torch.h>

namespace sdtrain {

/// Name -> tensor, keys as in module.named_parameters() / named_buffers() (diffusers keys).
using TensorMap = std::map<std::string, torch::Tensor>;

/// Copies `state` into `module`'s parameters and buffers without recording autograd history.
/// @throws FormatError listing (by name) every missing key, unexpected key and shape mismatch;
///         `source` (e.g. a file path) is named in the message. Nothing is copied on error.
void load_state_dict_strict(torch::nn::Module& module, const TensorMap& state,
                            const std::string& source = "state dict");

/// The same over the module's parameters only (what a training checkpoint holds: buffers such as
/// a LoRA module's alpha come from the config, not the checkpoint).
void load_parameters_strict(torch::nn::Module& module, const TensorMap& state, const std::string& source);

/// The module's parameters and buffers as a map (detached views, not copies).
TensorMap module_state_dict(const torch::nn::Module& module);

}  // namespace sdtrain
