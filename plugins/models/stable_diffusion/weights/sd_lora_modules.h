#pragma once
/// The wrapped modules of a LoraFile, grouped and checked: the one place that decides whether an
/// adapter fits a model (read_lora_file, write_lora_file and merge_lora all go through it).
#include <map>
#include <string>

#include <torch/torch.h>

#include "plugins/models/stable_diffusion/weights/sd_lora_format.h"

namespace sdtrain {

/// The internal key suffixes of one wrapped module.
inline constexpr char kLoraDownSuffix[] = ".lora_down.weight";
inline constexpr char kLoraUpSuffix[] = ".lora_up.weight";
inline constexpr char kLoraAlphaSuffix[] = ".alpha";

/// One wrapped module.
struct LoraModule {
  const LoraTarget* target = nullptr;
  torch::Tensor down;  ///< as stored (dtype kept)
  torch::Tensor up;
  double alpha = 0;    ///< the file's alpha, or the rank when it has none (kohya's rule)
  bool has_alpha = false;
  int64_t rank = 0;
};

/// Groups `lora.tensors` by kohya module name and checks every tensor: the key is
/// "<name>.lora_down.weight" / ".lora_up.weight" / ".alpha" of a target; down and up are both
/// there, floating point, finite, and shaped for the target's weight with one rank; alpha is one
/// finite number. Throws FormatError "<source>: '<key>': ..." naming the first key at fault
/// (sorted order), spelt as `file_keys` maps it (internal key → the key in the file) when given.
std::map<std::string, LoraModule> lora_modules(const LoraFile& lora, const std::map<std::string, LoraTarget>& targets,
                                               const std::string& source,
                                               const std::map<std::string, std::string>* file_keys = nullptr);

/// Why `lora_name` (kohya naming) fits no target: the closest target name, or a hint at the
/// architecture the name comes from (SDXL's text encoders, LDM block names).
std::string no_target_reason(const std::string& lora_name, const std::map<std::string, LoraTarget>& targets);

/// "[a, b, c]".
std::string shape_text(c10::IntArrayRef shape);

}  // namespace sdtrain
