#pragma once
/// The adapter metadata diffusers keeps in a PEFT LoRA file's safetensors header: under
/// "lora_adapter_metadata", one JSON object whose keys are "<component>.<LoraConfig field>"
/// ("unet.r", "unet.lora_alpha", "text_encoder.alpha_pattern", ...), written by save_lora_weights
/// with indent 2 and sorted keys and handed back to LoraConfig(**fields) by load_lora_weights. It
/// is the only place such a file records alphas.
#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

namespace sdtrain {

/// The header entry (diffusers' LORA_ADAPTER_METADATA_KEY).
inline constexpr char kLoraAdapterMetadataKey[] = "lora_adapter_metadata";

/// The LoraConfig fields that decide each module's rank and scale. Defaults are peft's.
struct PeftLoraConfig {
  int64_t r = 8;
  double lora_alpha = 8;
  /// Regex → value, in the file's order (peft takes the first key that matches).
  std::vector<std::pair<std::string, int64_t>> rank_pattern;
  std::vector<std::pair<std::string, double>> alpha_pattern;
  std::vector<std::string> target_modules;
  bool use_rslora = false;  ///< scale alpha / sqrt(r) instead of alpha / r
  bool use_dora = false;
};

/// The first pattern that matches the end of `module_name` at a '.' boundary, as peft's
/// get_pattern_key (`re.match(rf"(.*\.)?({key})$", name)`); nullptr when none does.
/// `alternate_name` (may be empty) is tried too: the text encoder's modules are named with
/// "text_model." by transformers < 5.6 and without it since, and a file may come from either.
template <typename Value>
const Value* peft_pattern_value(const std::vector<std::pair<std::string, Value>>& patterns,
                                const std::string& module_name, const std::string& alternate_name,
                                const std::string& source);

/// {"<component>.<field>": value} for every component, as JSON text with indent 2 and sorted keys
/// (Python's json.dumps(..., indent=2, sort_keys=True), which diffusers uses). Written fields:
/// r, lora_alpha, rank_pattern, alpha_pattern, target_modules, peft_type "LORA" and the defaults
/// bias "none", fan_in_fan_out, lora_dropout, use_dora, use_rslora: fields every peft release
/// since 0.9 knows, since diffusers passes them to LoraConfig(**fields), which refuses unknown ones.
std::string peft_metadata_json(const std::map<std::string, PeftLoraConfig>& by_component);

/// Parses that JSON; only components with at least one field appear. Fields other than those of
/// PeftLoraConfig are ignored. FormatError "<source>: lora_adapter_metadata: <key>: ..." for text
/// that is not such an object or a field of the wrong type.
std::map<std::string, PeftLoraConfig> parse_peft_metadata(const std::string& json, const std::string& source);

}  // namespace sdtrain
