#include "plugins/models/stable_diffusion/modules/lora_network.h"

#include <algorithm>
#include <regex>
#include <sstream>

#include "framework/util/strings.h"
#include "plugins/models/stable_diffusion/weights/sd_lora_format.h"
#include "sdtrain/errors.h"

namespace sdtrain {
namespace {

// kohya's LoRANetwork targets: the layers inside Transformer2DModel blocks, and with conv_dim
// those of ResnetBlock2D, Downsample2D and Upsample2D; the text encoder's CLIPAttention and CLIPMLP.
const char* const kDefaultUnetPattern = R"((^|\.)attentions\.\d+\.)";
const char* const kDefaultConvPattern = R"((^|\.)(resnets|downsamplers|upsamplers)\.\d+\.)";
const char* const kDefaultTextPattern = R"(^text_model\.encoder\.layers\.\d+\.(self_attn|mlp)\.)";

/// Up to `count` of `paths` closest to `pattern` (its regex escapes and anchors dropped), for
/// error messages; ties in path order.
std::string closest_paths(const std::string& pattern, const std::vector<std::string>& paths, std::size_t count) {
  std::string literal;
  for (const char c : pattern) {
    if (c != '\\' && c != '^' && c != '$') literal += c;
  }
  std::vector<std::pair<std::size_t, std::string>> ranked;
  for (const auto& path : paths) ranked.emplace_back(substring_edit_distance(literal, path), path);
  std::sort(ranked.begin(), ranked.end());
  std::string out;
  for (std::size_t i = 0; i < std::min(count, ranked.size()); ++i) out += "\n  " + ranked[i].second;
  return out;
}

std::regex compile(const std::string& pattern, const std::string& field) {
  try {
    return std::regex(pattern, std::regex::ECMAScript);
  } catch (const std::regex_error& e) {
    throw ConfigError(field + ": '" + pattern + "' is not a regular expression (" + e.what() + ")");
  }
}

LoraModuleOptions module_options(const LoraOptions& options, bool kxk) {
  LoraModuleOptions m;
  m.rank = kxk ? options.conv_rank() : options.rank();
  m.alpha = kxk ? options.conv_alpha() : options.alpha();
  m.dropout = options.dropout();
  m.rank_dropout = options.rank_dropout();
  m.module_dropout = options.module_dropout();
  return m;
}

}  // namespace

LoraNetworkImpl::LoraNetworkImpl(const LoraOptions& options, const SdNetworks& networks) {
  if (options.rank() <= 0) throw ConfigError("adapter.lora.rank: must be > 0, got " + std::to_string(options.rank()));
  if (options.conv_rank() < 0) {
    throw ConfigError("adapter.lora.conv_rank: must be >= 0 (0: no LoCon), got " + std::to_string(options.conv_rank()));
  }
  TORCH_CHECK(!networks.unet.is_empty(), "LoraNetwork: the networks have no UNet");
  const LoraNameIndex names = lora_name_index(lora_targets(networks));
  wrap(options, {{"unet", networks.unet.ptr().get()}}, options.unet_targets(), "adapter.lora.unet_targets", names);
  if (options.text_encoder()) {
    TORCH_CHECK(!networks.text_encoder.is_empty(), "LoraNetwork: adapter.lora.text_encoder needs the text encoder");
    std::vector<Part> encoders{{"text_encoder", networks.text_encoder.ptr().get()}};
    if (!networks.text_encoder_2.is_empty()) encoders.push_back({"text_encoder_2", networks.text_encoder_2.ptr().get()});
    wrap(options, encoders, options.text_encoder_targets(), "adapter.lora.text_encoder_targets", names);
  } else if (!options.text_encoder_targets().empty()) {
    throw ConfigError("adapter.lora.text_encoder_targets: set, but adapter.lora.text_encoder is off");
  }
}

void LoraNetworkImpl::wrap(const LoraOptions& options, const std::vector<Part>& parts,
                           const google::protobuf::RepeatedPtrField<std::string>& patterns, const std::string& field,
                           const LoraNameIndex& names) {
  std::vector<std::regex> regexes;
  std::vector<int64_t> matched(static_cast<std::size_t>(patterns.size()), 0);
  for (const auto& pattern : patterns) regexes.push_back(compile(pattern, field));
  const bool defaults = patterns.empty();
  const bool unet = parts.front().component == "unet";
  const std::regex default_pattern(unet ? kDefaultUnetPattern : kDefaultTextPattern);
  const std::regex conv_pattern(kDefaultConvPattern);
  std::vector<std::string> adaptable_paths;
  const std::size_t first_layer = layers_.size();

  for (const Part& part : parts) {
    const auto& part_names = names.at(part.component);
    for (const auto& item : part.root->named_modules("", /*include_self=*/false)) {
      const std::string& path = item.key();
      const auto linear = std::dynamic_pointer_cast<AdaptableLinearImpl>(item.value());
      const auto conv = std::dynamic_pointer_cast<AdaptableConv2dImpl>(item.value());
      if (!linear && !conv) continue;
      adaptable_paths.push_back(path);
      const bool kxk = conv && (conv->options.kernel_size()->at(0) != 1 || conv->options.kernel_size()->at(1) != 1);
      bool selected = false;
      if (defaults) {
        selected = (!kxk && std::regex_search(path, default_pattern)) ||
                   (unet && options.conv_rank() > 0 && std::regex_search(path, conv_pattern));
      } else {
        for (std::size_t i = 0; i < regexes.size(); ++i) {
          if (!std::regex_search(path, regexes[i])) continue;
          if (kxk && options.conv_rank() == 0) continue;
          ++matched[i];
          selected = true;
        }
      }
      if (!selected) continue;
      LoraLayer layer;
      layer.name = part_names.at(path);
      layer.component = part.component;
      layer.module_path = path;
      layer.conv = static_cast<bool>(conv);
      const LoraModuleOptions adapter_options = module_options(options, kxk);
      layer.adapter = conv ? LoraModule(conv->options, adapter_options) : LoraModule(linear->options, adapter_options);
      register_module(layer.name, layer.adapter);
      std::shared_ptr<AdapterSlot> slot = conv ? std::shared_ptr<AdapterSlot>(conv) : std::shared_ptr<AdapterSlot>(linear);
      slot->set_adapter(layer.adapter.ptr());
      slots_.push_back(slot);
      layers_.push_back(std::move(layer));
    }
  }
  const std::string what = unet ? "the unet" : parts.size() > 1 ? "the text encoders" : "the text_encoder";
  for (int i = 0; i < patterns.size(); ++i) {
    if (matched[static_cast<std::size_t>(i)] > 0) continue;
    throw ConfigError(field + ": '" + patterns[i] + "' matches no Linear or Conv2d layer of " + what +
                      " (k x k convolutions only with conv_rank > 0); the closest layer paths:" +
                      closest_paths(patterns[i], adaptable_paths, 5));
  }
  if (layers_.size() == first_layer) {
    throw ConfigError(field + ": no layer of " + what + " was selected for LoRA");
  }
}

void LoraNetworkImpl::detach() {
  for (const auto& weak : slots_) {
    if (const auto slot = weak.lock()) slot->set_adapter(nullptr);
  }
}

bool LoraNetworkImpl::is_attached() const {
  for (const auto& weak : slots_) {
    const auto slot = weak.lock();
    if (slot && slot->adapter()) return true;
  }
  return false;
}

std::string LoraNetworkImpl::describe() const {
  std::ostringstream out;
  int64_t unet = 0, text = 0, text_2 = 0;
  for (const auto& layer : layers_) {
    (layer.component == "unet" ? unet : layer.component == "text_encoder" ? text : text_2) += 1;
  }
  out << "LoRA adapters on " << unet << " UNet layers and " << text << " text-encoder layers";
  if (text_2 > 0) out << " (and " << text_2 << " of the second text encoder)";
  out << ":";
  for (const auto& layer : layers_) {
    out << "\n  " << layer.name << " (" << (layer.conv ? "Conv2d" : "Linear") << ", rank " << layer.adapter->rank()
        << ", scale " << layer.adapter->scale() << ")";
  }
  return out.str();
}

}  // namespace sdtrain
