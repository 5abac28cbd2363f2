#include "plugins/models/stable_diffusion/weights/sd_component_configs.h"

#include <algorithm>
#include <cctype>
#include <memory>
#include <utility>
#include <vector>

#include <google/protobuf/message.h>
#include <nlohmann/json.hpp>

#include "framework/registry/registry.h"
#include "sdtrain/errors.h"
#include "sdtrain/noise_scheduler.h"

namespace sdtrain {
namespace {

using google::protobuf::FieldDescriptor;
using google::protobuf::Message;
using google::protobuf::Reflection;
using nlohmann::json;

json parse_json(const std::string& text, const std::string& source) {
  try {
    json parsed = json::parse(text);
    if (!parsed.is_object()) throw FormatError(source + ": expected a JSON object");
    return parsed;
  } catch (const json::exception& error) {
    throw FormatError(source + ": not valid JSON: " + error.what());
  }
}

/// diffusers writes per-block lists for some settings that may also be scalars
/// (attention_head_dim: [8, 8, 8, 8]); a list of equal values means that value.
json collapse_equal_list(const json& value) {
  if (!value.is_array() || value.empty()) return value;
  for (const auto& item : value) {
    if (item != value.front()) return value;
  }
  return value.front();
}

std::string what_to(const FieldDescriptor* field) {
  return std::string("a ") + (field->is_repeated() ? "list of " : "") + field->cpp_type_name() + " value";
}

void set_one(Message* message, const FieldDescriptor* field, const json& value, const std::string& where) {
  const Reflection* reflection = message->GetReflection();
  const bool repeated = field->is_repeated();
  auto bad = [&] { return FormatError(where + ": expected " + what_to(field) + ", got " + value.dump()); };
  switch (field->cpp_type()) {
    case FieldDescriptor::CPPTYPE_INT32:
    case FieldDescriptor::CPPTYPE_INT64:
    case FieldDescriptor::CPPTYPE_UINT32:
    case FieldDescriptor::CPPTYPE_UINT64: {
      if (!value.is_number_integer() && !value.is_number_unsigned()) throw bad();
      const auto number = value.get<int64_t>();
      if (field->cpp_type() == FieldDescriptor::CPPTYPE_INT32) {
        repeated ? reflection->AddInt32(message, field, static_cast<int32_t>(number))
                 : reflection->SetInt32(message, field, static_cast<int32_t>(number));
      } else if (field->cpp_type() == FieldDescriptor::CPPTYPE_INT64) {
        repeated ? reflection->AddInt64(message, field, number) : reflection->SetInt64(message, field, number);
      } else if (field->cpp_type() == FieldDescriptor::CPPTYPE_UINT32) {
        repeated ? reflection->AddUInt32(message, field, static_cast<uint32_t>(number))
                 : reflection->SetUInt32(message, field, static_cast<uint32_t>(number));
      } else {
        repeated ? reflection->AddUInt64(message, field, static_cast<uint64_t>(number))
                 : reflection->SetUInt64(message, field, static_cast<uint64_t>(number));
      }
      return;
    }
    case FieldDescriptor::CPPTYPE_FLOAT:
    case FieldDescriptor::CPPTYPE_DOUBLE: {
      if (!value.is_number()) throw bad();
      const auto number = value.get<double>();
      if (field->cpp_type() == FieldDescriptor::CPPTYPE_FLOAT) {
        repeated ? reflection->AddFloat(message, field, static_cast<float>(number))
                 : reflection->SetFloat(message, field, static_cast<float>(number));
      } else {
        repeated ? reflection->AddDouble(message, field, number) : reflection->SetDouble(message, field, number);
      }
      return;
    }
    case FieldDescriptor::CPPTYPE_BOOL:
      if (!value.is_boolean()) throw bad();
      repeated ? reflection->AddBool(message, field, value.get<bool>())
               : reflection->SetBool(message, field, value.get<bool>());
      return;
    case FieldDescriptor::CPPTYPE_STRING:
      if (!value.is_string()) throw bad();
      repeated ? reflection->AddString(message, field, value.get<std::string>())
               : reflection->SetString(message, field, value.get<std::string>());
      return;
    case FieldDescriptor::CPPTYPE_ENUM: {
      // diffusers spells enum values in lower case ("scaled_linear", "v_prediction").
      if (!value.is_string()) throw bad();
      std::string name = value.get<std::string>();
      std::transform(name.begin(), name.end(), name.begin(), [](unsigned char c) { return std::toupper(c); });
      const auto* enum_value = field->enum_type()->FindValueByName(name);
      if (enum_value == nullptr) {
        std::string known;
        for (int i = 0; i < field->enum_type()->value_count(); ++i) {
          std::string lower = field->enum_type()->value(i)->name();
          std::transform(lower.begin(), lower.end(), lower.begin(), [](unsigned char c) { return std::tolower(c); });
          known += (i ? ", " : "") + lower;
        }
        throw FormatError(where + ": " + value.dump() + " is not supported (known: " + known + ")");
      }
      repeated ? reflection->AddEnum(message, field, enum_value) : reflection->SetEnum(message, field, enum_value);
      return;
    }
    case FieldDescriptor::CPPTYPE_MESSAGE:
      break;
  }
  throw bad();
}

/// Sets every scalar field of `message` whose name is a non-null key of `config`.
void fill_fields(const json& config, Message* message, const std::string& source) {
  const auto* descriptor = message->GetDescriptor();
  for (int i = 0; i < descriptor->field_count(); ++i) {
    const FieldDescriptor* field = descriptor->field(i);
    if (field->cpp_type() == FieldDescriptor::CPPTYPE_MESSAGE) continue;
    const auto found = config.find(field->name());
    if (found == config.end() || found->is_null()) continue;
    const std::string where = source + ": " + field->name();
    if (field->is_repeated()) {
      // A scalar for a per-block list (attention_head_dim: 8) is one value for every block.
      message->GetReflection()->ClearField(message, field);
      if (found->is_array()) {
        for (const auto& item : *found) set_one(message, field, item, where);
      } else {
        set_one(message, field, *found, where);
      }
    } else {
      const json value = collapse_equal_list(*found);
      if (value.is_array()) {
        throw FormatError(where + ": per-block values " + found->dump() + " are not supported (one value for all blocks)");
      }
      set_one(message, field, value, where);
    }
  }
}

/// Keys the sdtrain modules do not model, with the only value they support (null = absent).
using Supported = std::vector<std::pair<const char*, json>>;

void require_supported(const json& config, const Supported& supported, const std::string& source) {
  for (const auto& [key, expected] : supported) {
    const auto found = config.find(key);
    if (found == config.end() || collapse_equal_list(*found) == expected) continue;
    if (expected.is_null() && found->is_null()) continue;
    throw FormatError(source + ": " + key + ": " + found->dump() + " is not supported (SD v1 has " + expected.dump() +
                      ")");
  }
}

/// What diffusers' scheduler classes take for a key that a scheduler_config.json lacks: their
/// __init__ defaults (diffusers 0.42), since `XScheduler.from_config(config)` fills every missing
/// key from them. A PNDM config (what SD pipelines ship) has no clip_sample, so DDIM built from it
/// clips, and Euler's timestep_spacing falls back to "linspace" only when the key is absent.
json diffusers_class_defaults(const std::string& sampler) {
  json defaults = {{"num_train_timesteps", 1000}, {"beta_start", 0.0001},        {"beta_end", 0.02},
                   {"beta_schedule", "linear"},   {"prediction_type", "epsilon"}, {"steps_offset", 0}};
  if (sampler == "ddim") {
    defaults.update({{"timestep_spacing", "leading"}, {"clip_sample", true}, {"clip_sample_range", 1.0},
                     {"set_alpha_to_one", true}});
  } else if (sampler == "pndm") {
    defaults.update({{"timestep_spacing", "leading"}, {"skip_prk_steps", false}, {"set_alpha_to_one", false}});
  } else if (sampler == "ddpm") {
    defaults.update({{"timestep_spacing", "leading"}, {"clip_sample", true}, {"clip_sample_range", 1.0},
                     {"variance_type", "fixed_small"}});
  } else if (sampler == "euler") {
    defaults.update({{"timestep_spacing", "linspace"}, {"use_karras_sigmas", false}});
  } else if (sampler == "euler_ancestral") {
    defaults.update({{"timestep_spacing", "linspace"}});
  } else if (sampler == "dpmpp_2m") {
    defaults.update({{"timestep_spacing", "linspace"}, {"solver_order", 2}, {"solver_type", "midpoint"},
                     {"lower_order_final", true}, {"use_karras_sigmas", false}});
  } else {
    return json::object();  // a plugin from elsewhere: its own defaults apply
  }
  return defaults;
}

/// The options message of scheduler plugin `type` (its registered options type), empty; null for a
/// name the registry does not know.
std::unique_ptr<Message> new_scheduler_options(const std::string& type) {
  const PluginEntry* entry = Registry<NoiseScheduler>::instance().find(type);
  if (entry == nullptr) return nullptr;
  return std::unique_ptr<Message>(
      google::protobuf::MessageFactory::generated_factory()->GetPrototype(entry->options_type)->New());
}

/// The noise schedule sits in a sub-message named "schedule" (NoiseScheduleOptions) in every
/// sampler's options; null for options without one.
Message* schedule_of(Message& options) {
  const FieldDescriptor* field = options.GetDescriptor()->FindFieldByName("schedule");
  if (field == nullptr || field->cpp_type() != FieldDescriptor::CPPTYPE_MESSAGE) return nullptr;
  return options.GetReflection()->MutableMessage(&options, field);
}

}  // namespace

UNet2DConditionConfig unet_config_from_json(const std::string& text, const std::string& source) {
  const json config = parse_json(text, source);
  require_supported(config,
                    {{"class_embed_type", nullptr},
                     {"num_class_embeds", nullptr},
                     {"encoder_hid_dim", nullptr},
                     {"time_cond_proj_dim", nullptr},
                     {"num_attention_heads", nullptr},
                     {"time_embedding_type", "positional"},
                     {"resnet_time_scale_shift", "default"},
                     {"only_cross_attention", false},
                     {"dual_cross_attention", false},
                     {"center_input_sample", false},
                     {"class_embeddings_concat", false},
                     {"conv_in_kernel", 3},
                     {"conv_out_kernel", 3},
                     {"act_fn", "silu"},
                     {"mid_block_type", "UNetMidBlock2DCrossAttn"},
                     {"attention_type", "default"}},
                    source);
  UNet2DConditionConfig unet;
  fill_fields(config, &unet, source);
  return unet;
}

AutoencoderKLConfig vae_config_from_json(const std::string& text, const std::string& source) {
  const json config = parse_json(text, source);
  require_supported(config,
                    {{"act_fn", "silu"},
                     {"shift_factor", nullptr},
                     {"latents_mean", nullptr},
                     {"latents_std", nullptr},
                     {"use_quant_conv", true},
                     {"use_post_quant_conv", true},
                     {"mid_block_add_attention", true},
                     {"down_block_types", "DownEncoderBlock2D"},
                     {"up_block_types", "UpDecoderBlock2D"}},
                    source);
  AutoencoderKLConfig vae;
  fill_fields(config, &vae, source);
  return vae;
}

ClipTextConfig clip_config_from_json(const std::string& text, const std::string& source) {
  const json config = parse_json(text, source);
  ClipTextConfig clip;
  fill_fields(config, &clip, source);
  // transformers writes projection_dim (default 512) for every CLIP text config; only
  // CLIPTextModelWithProjection has the projection.
  bool with_projection = false;
  if (const auto found = config.find("architectures"); found != config.end() && found->is_array()) {
    for (const auto& name : *found) with_projection |= name == "CLIPTextModelWithProjection";
  }
  if (!with_projection) clip.clear_projection_dim();
  return clip;
}

PluginSpec sampler_spec_from_scheduler_config(const std::string& sampler, const std::string& scheduler_json,
                                              const std::string& source) {
  PluginSpec spec;
  spec.set_type(sampler);
  std::unique_ptr<Message> options = new_scheduler_options(sampler);
  if (options == nullptr) {
    Registry<NoiseScheduler>::instance().check(spec, "--sampler");  // throws, listing the registered schedulers
    throw ConfigError("--sampler: unknown sampler '" + sampler + "'");
  }
  if (scheduler_json.empty()) return spec;
  json config = diffusers_class_defaults(sampler);
  config.update(parse_json(scheduler_json, source));
  if (config.contains("trained_betas") && !config["trained_betas"].is_null()) {
    throw FormatError(source + ": trained_betas: explicit beta lists are not supported");
  }
  fill_fields(config, options.get(), source);
  if (Message* schedule = schedule_of(*options)) fill_fields(config, schedule, source);
  spec.mutable_options()->PackFrom(*options);
  return spec;
}

PluginSpec sampler_with_training_schedule(const SampleRequest& request, const PluginSpec& training) {
  PluginSpec spec;
  spec.set_type(request.sampler);
  auto options = new_scheduler_options(request.sampler);
  auto training_options = new_scheduler_options(training.type());
  if (options == nullptr || training_options == nullptr || !training.options().UnpackTo(training_options.get())) {
    if (request.sampler_options) spec.mutable_options()->PackFrom(*request.sampler_options);
    return spec;
  }
  Message* schedule = schedule_of(*options);
  const Message* training_schedule = schedule_of(*training_options);
  if (schedule != nullptr && training_schedule != nullptr &&
      schedule->GetDescriptor() == training_schedule->GetDescriptor()) {
    schedule->CopyFrom(*training_schedule);
  }
  if (request.sampler_options) {
    if (request.sampler_options->GetDescriptor() != options->GetDescriptor()) {
      throw ConfigError("sampler " + request.sampler + ": options of type " +
                        request.sampler_options->GetDescriptor()->full_name() + ", expected " +
                        options->GetDescriptor()->full_name());
    }
    options->MergeFrom(*request.sampler_options);
  }
  spec.mutable_options()->PackFrom(*options);
  return spec;
}

}  // namespace sdtrain
