#include "plugins/models/stable_diffusion/weights/sd_lora_peft_metadata.h"

#include <cmath>
#include <regex>
#include <unordered_map>

#include <nlohmann/json.hpp>

#include "sdtrain/errors.h"

namespace sdtrain {
namespace {

using ordered_json = nlohmann::ordered_json;

/// An integral alpha is written as a JSON integer, as Python writes the int alphas training
/// scripts pass; any other value as the shortest text that reads back as the same double.
nlohmann::json alpha_json(double alpha) {
  if (std::nearbyint(alpha) == alpha && std::fabs(alpha) < 9.0e15) return static_cast<int64_t>(alpha);
  return alpha;
}

bool pattern_matches(const std::string& pattern, const std::string& name, const std::string& source) {
  // Each pattern is tried against every module (hundreds of patterns and modules for a LoCon file
  // of SD v1), so it is compiled once.
  static thread_local std::unordered_map<std::string, std::regex> compiled;
  auto it = compiled.find(pattern);
  if (it == compiled.end()) {
    try {
      it = compiled.emplace(pattern, std::regex("(.*\\.)?(" + pattern + ")$")).first;
    } catch (const std::regex_error& error) {
      throw FormatError(source + ": " + kLoraAdapterMetadataKey + ": pattern '" + pattern +
                        "' is not a regular expression: " + error.what());
    }
  }
  return std::regex_match(name, it->second);
}

}  // namespace

template <typename Value>
const Value* peft_pattern_value(const std::vector<std::pair<std::string, Value>>& patterns,
                                const std::string& module_name, const std::string& alternate_name,
                                const std::string& source) {
  for (const auto& [pattern, value] : patterns) {
    if (pattern_matches(pattern, module_name, source) ||
        (!alternate_name.empty() && pattern_matches(pattern, alternate_name, source))) {
      return &value;
    }
  }
  return nullptr;
}

template const int64_t* peft_pattern_value(const std::vector<std::pair<std::string, int64_t>>&, const std::string&,
                                           const std::string&, const std::string&);
template const double* peft_pattern_value(const std::vector<std::pair<std::string, double>>&, const std::string&,
                                          const std::string&, const std::string&);

std::string peft_metadata_json(const std::map<std::string, PeftLoraConfig>& by_component) {
  nlohmann::json out = nlohmann::json::object();  // std::map underneath: keys sorted as sort_keys
  for (const auto& [component, config] : by_component) {
    const std::string prefix = component + ".";
    nlohmann::json rank_pattern = nlohmann::json::object();
    for (const auto& [pattern, rank] : config.rank_pattern) rank_pattern[pattern] = rank;
    nlohmann::json alpha_pattern = nlohmann::json::object();
    for (const auto& [pattern, alpha] : config.alpha_pattern) alpha_pattern[pattern] = alpha_json(alpha);
    out[prefix + "r"] = config.r;
    out[prefix + "lora_alpha"] = alpha_json(config.lora_alpha);
    out[prefix + "rank_pattern"] = rank_pattern;
    out[prefix + "alpha_pattern"] = alpha_pattern;
    out[prefix + "target_modules"] = config.target_modules;
    out[prefix + "peft_type"] = "LORA";
    out[prefix + "bias"] = "none";
    out[prefix + "fan_in_fan_out"] = false;
    out[prefix + "lora_dropout"] = 0.0;
    out[prefix + "use_dora"] = config.use_dora;
    out[prefix + "use_rslora"] = config.use_rslora;
  }
  return out.dump(2, ' ', /*ensure_ascii=*/true);
}

std::map<std::string, PeftLoraConfig> parse_peft_metadata(const std::string& json, const std::string& source) {
  const std::string where = source + ": " + kLoraAdapterMetadataKey;
  ordered_json root;
  try {
    root = ordered_json::parse(json);
  } catch (const ordered_json::parse_error& error) {
    throw FormatError(where + ": not JSON: " + error.what());
  }
  if (!root.is_object()) throw FormatError(where + ": expected a JSON object of \"<component>.<field>\" keys");
  std::map<std::string, PeftLoraConfig> configs;
  // Named, not a structured binding: the lambda below captures them (clang before 16 cannot).
  for (const auto& item : root.items()) {
    const std::string& key = item.key();
    const ordered_json& value = item.value();
    const std::size_t dot = key.find('.');
    if (dot == std::string::npos) continue;
    const std::string field = key.substr(dot + 1);
    const auto wrong = [&](const char* expected) {
      return FormatError(where + ": " + key + ": expected " + expected + ", got " + value.dump());
    };
    PeftLoraConfig& config = configs[key.substr(0, dot)];
    if (field == "r") {
      if (!value.is_number_integer()) throw wrong("an integer");
      config.r = value.get<int64_t>();
    } else if (field == "lora_alpha") {
      if (!value.is_number()) throw wrong("a number");
      config.lora_alpha = value.get<double>();
    } else if (field == "rank_pattern" || field == "alpha_pattern") {
      if (value.is_null()) continue;
      if (!value.is_object()) throw wrong("an object of pattern: value");
      for (const auto& [pattern, entry] : value.items()) {
        if (field == "rank_pattern") {
          if (!entry.is_number_integer()) throw wrong("integer ranks");
          config.rank_pattern.emplace_back(pattern, entry.get<int64_t>());
        } else {
          if (!entry.is_number()) throw wrong("numeric alphas");
          config.alpha_pattern.emplace_back(pattern, entry.get<double>());
        }
      }
    } else if (field == "target_modules") {
      if (value.is_string()) {
        config.target_modules = {value.get<std::string>()};
      } else if (value.is_array()) {
        for (const auto& entry : value) {
          if (!entry.is_string()) throw wrong("module names");
          config.target_modules.push_back(entry.get<std::string>());
        }
      } else if (!value.is_null()) {
        throw wrong("a list of module names");
      }
    } else if (field == "use_rslora" || field == "use_dora") {
      if (value.is_null()) continue;
      if (!value.is_boolean()) throw wrong("true or false");
      (field == "use_rslora" ? config.use_rslora : config.use_dora) = value.get<bool>();
    }
  }
  return configs;
}

}  // namespace sdtrain
