#pragma once
/// Adapters for the LoRA format tests: random weights on kohya's default targets (LoRA on the
/// attention / feed-forward / projection layers and the text encoder, LoCon on the ResNet,
/// down- and upsampler convolutions), with ranks and alphas that differ between modules so that
/// every per-module rule (rank_pattern, alpha_pattern) is exercised.
#include <cstdint>
#include <map>
#include <string>

#include <gtest/gtest.h>
#include <torch/torch.h>

#include "framework/io/safetensors_writer.h"
#include "framework/util/strings.h"
#include "plugins/models/stable_diffusion/weights/sd_lora_format.h"
#include "sdtrain/errors.h"

namespace sdtrain::test {

/// kohya's default SD v1 targets: Transformer2DModel's layers, the ResnetBlock2D / Down- /
/// Upsample2D convolutions (LoCon) and the CLIP attention and MLP layers.
inline bool kohya_default_target(const LoraTarget& target) {
  const std::string& path = target.module_path;
  if (target.component != "unet") return path.find(".layers.") != std::string::npos;
  return path.find(".attentions.") != std::string::npos || path.find(".resnets.") != std::string::npos ||
         path.find("samplers.") != std::string::npos;
}

/// Random down / up weights (seeded) for every kohya default target: Linear layers rank 4 and
/// alpha 2, except the UNet's ff.net.0.proj (alpha 8), ff.net.2 (rank 3) and the text encoder's
/// fc1 (rank 3); convs rank 2 and alpha 1. With `attention_alphas`, the UNet's to_k and the text
/// encoder's k_proj take alpha 8 too: diffusers 0.42 ignores a kohya file's alphas there (its
/// kohya conversion names those patterns after the old attention processors, and the text
/// encoder's with "text_model.", which transformers 5 dropped) but reads them from a PEFT file.
/// `scale` sets the size of the weights, hence how much the adapter changes the model.
inline LoraFile random_lora(const std::map<std::string, LoraTarget>& targets, uint64_t seed, double scale = 0.1,
                            torch::ScalarType dtype = torch::kFloat32, bool attention_alphas = true) {
  torch::manual_seed(seed);
  LoraFile lora;
  for (const auto& [name, target] : targets) {
    if (!kohya_default_target(target)) continue;
    const auto& w = target.weight_shape;
    const std::string& path = target.module_path;
    const bool wide_rank = ends_with(path, "ff.net.2") || ends_with(path, "mlp.fc1");
    const bool wide_alpha = ends_with(path, "ff.net.0.proj") ||
                            (attention_alphas && (ends_with(path, "to_k") || ends_with(path, "k_proj")));
    const int64_t rank = target.conv ? 2 : (wide_rank ? 3 : 4);
    const double alpha = target.conv ? 1.0 : (wide_alpha ? 8.0 : 2.0);
    torch::Tensor down = target.conv ? torch::randn({rank, w[1], w[2], w[3]}) : torch::randn({rank, w[1]});
    torch::Tensor up = target.conv ? torch::randn({w[0], rank, 1, 1}) : torch::randn({w[0], rank});
    lora.tensors[name + ".lora_down.weight"] = (down * scale).to(dtype);
    lora.tensors[name + ".lora_up.weight"] = (up * scale).to(dtype);
    lora.tensors[name + ".alpha"] = torch::scalar_tensor(alpha, torch::kFloat32);
  }
  lora.metadata = {{"ss_network_module", "networks.lora"}, {"ss_network_dim", "4"}, {"ss_network_alpha", "2.0"}};
  return lora;
}

/// `tensors` written as a safetensors file at `path` (any keys: for files no writer of ours
/// would write); returns `path`.
inline std::string write_raw_safetensors(const std::string& path, const std::map<std::string, torch::Tensor>& tensors,
                                         const std::map<std::string, std::string>& metadata = {}) {
  std::vector<std::pair<std::string, torch::Tensor>> list(tensors.begin(), tensors.end());
  save_safetensors(path, list, metadata);
  return path;
}

/// The FormatError message read_lora_file gives for `file` (fails the test if it reads).
inline std::string lora_read_error(const std::string& file, const std::map<std::string, LoraTarget>& targets) {
  try {
    read_lora_file(file, targets);
  } catch (const FormatError& error) {
    return error.what();
  }
  ADD_FAILURE() << file << " was read";
  return {};
}

}  // namespace sdtrain::test
