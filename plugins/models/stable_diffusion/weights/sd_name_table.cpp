#include "plugins/models/stable_diffusion/weights/sd_name_table.h"

#include <algorithm>
#include <set>
#include <utility>

#include "sdtrain/errors.h"

namespace sdtrain {
namespace {

/// Splits "a.b.c" at dots.
std::vector<std::string> split_dots(const std::string& name) {
  std::vector<std::string> parts;
  std::size_t start = 0;
  while (true) {
    std::size_t dot = name.find('.', start);
    parts.push_back(name.substr(start, dot == std::string::npos ? std::string::npos : dot - start));
    if (dot == std::string::npos) return parts;
    start = dot + 1;
  }
}

/// The integer in parts[i] when it is one, else -1.
int index_at(const std::vector<std::string>& parts, std::size_t i) {
  if (i >= parts.size() || parts[i].empty() ||
      !std::all_of(parts[i].begin(), parts[i].end(), [](char c) { return c >= '0' && c <= '9'; })) {
    return -1;
  }
  return std::stoi(parts[i]);
}

bool starts_with(const std::string& s, const std::string& prefix) { return s.compare(0, prefix.size(), prefix) == 0; }

/// Sub-name pairs (original, diffusers) for the kinds that rename inside a module.
const std::vector<std::pair<std::string, std::string>>& sub_names(NameRowKind kind) {
  static const std::vector<std::pair<std::string, std::string>> unet_resnet = {
      {"in_layers.0", "norm1"},         {"in_layers.2", "conv1"},  {"emb_layers.1", "time_emb_proj"},
      {"out_layers.0", "norm2"},        {"out_layers.3", "conv2"}, {"skip_connection", "conv_shortcut"}};
  static const std::vector<std::pair<std::string, std::string>> vae_resnet = {
      {"norm1", "norm1"}, {"conv1", "conv1"}, {"norm2", "norm2"}, {"conv2", "conv2"}, {"nin_shortcut", "conv_shortcut"}};
  static const std::vector<std::pair<std::string, std::string>> vae_attention = {
      {"norm", "group_norm"}, {"q", "to_q"}, {"k", "to_k"}, {"v", "to_v"}, {"proj_out", "to_out.0"}};
  static const std::vector<std::pair<std::string, std::string>> none;
  switch (kind) {
    case NameRowKind::kUNetResnet: return unet_resnet;
    case NameRowKind::kVaeResnet: return vae_resnet;
    case NameRowKind::kVaeAttention: return vae_attention;
    default: return none;
  }
}

}  // namespace

UNetLayout infer_unet_layout(const std::vector<std::string>& names, NameLayout layout, const std::string& source) {
  UNetLayout out;
  out.mid_attention = false;
  if (layout == NameLayout::kDiffusers) {
    std::set<int> down, resnets;
    std::set<int> down_attn, up_attn;
    for (const auto& name : names) {
      auto p = split_dots(name);
      if (p[0] == "down_blocks" && index_at(p, 1) >= 0) {
        down.insert(index_at(p, 1));
        if (index_at(p, 1) == 0 && p.size() > 3 && p[2] == "resnets" && index_at(p, 3) >= 0) resnets.insert(index_at(p, 3));
        if (p.size() > 2 && p[2] == "attentions") down_attn.insert(index_at(p, 1));
      } else if (p[0] == "up_blocks" && p.size() > 2 && p[2] == "attentions") {
        up_attn.insert(index_at(p, 1));
      } else if (p[0] == "mid_block" && p.size() > 1 && p[1] == "attentions") {
        out.mid_attention = true;
      } else if (p[0] == "add_embedding") {
        out.text_time_embedding = true;
      }
    }
    if (down.empty() || resnets.empty()) {
      throw FormatError(source + ": no UNet down_blocks.N.resnets.M tensors (diffusers layout) found");
    }
    out.levels = *down.rbegin() + 1;
    out.layers_per_block = *resnets.rbegin() + 1;
    for (int b = 0; b < out.levels; ++b) {
      out.down_attention.push_back(down_attn.count(b) != 0);
      out.up_attention.push_back(up_attn.count(b) != 0);
    }
    return out;
  }
  std::set<int> inputs, ops, attn_inputs;
  std::set<std::pair<int, int>> output_children;  // (output block, child index) of non-upsampler children
  for (const auto& name : names) {
    auto p = split_dots(name);
    int i = index_at(p, 1);
    if (p[0] == "input_blocks" && i >= 0) {
      inputs.insert(i);
      if (p.size() > 3 && p[2] == "0" && p[3] == "op") ops.insert(i);
      if (p.size() > 2 && p[2] == "1") attn_inputs.insert(i);
    } else if (p[0] == "middle_block" && p.size() > 1 && p[1] == "2") {
      out.mid_attention = true;
    } else if (p[0] == "label_emb") {
      out.text_time_embedding = true;
    } else if (p[0] == "output_blocks" && i >= 0 && p.size() > 3) {
      if (p[2] == "1" && p[3] != "conv") output_children.insert({i, 1});
    }
  }
  if (inputs.size() < 2) throw FormatError(source + ": no UNet input_blocks.N tensors (original layout) found");
  out.layers_per_block = ops.empty() ? *inputs.rbegin() : *ops.begin() - 1;
  if (out.layers_per_block < 1) throw FormatError(source + ": UNet input_blocks.1 is a downsampler; unsupported layout");
  out.levels = static_cast<int>(ops.size()) + 1;
  const int per = out.layers_per_block + 1;
  for (int b = 0; b < out.levels; ++b) {
    out.down_attention.push_back(attn_inputs.count(1 + b * per) != 0);
    out.up_attention.push_back(output_children.count({b * per, 1}) != 0);
  }
  return out;
}

VaeLayout infer_vae_layout(const std::vector<std::string>& names, NameLayout layout, const std::string& source) {
  std::set<int> levels, resnets;
  const std::string blocks = layout == NameLayout::kOriginal ? "down" : "down_blocks";
  const std::string res = layout == NameLayout::kOriginal ? "block" : "resnets";
  for (const auto& name : names) {
    auto p = split_dots(name);
    if (p.size() > 4 && p[0] == "encoder" && p[1] == blocks && index_at(p, 2) >= 0) {
      levels.insert(index_at(p, 2));
      if (index_at(p, 2) == 0 && p[3] == res && index_at(p, 4) >= 0) resnets.insert(index_at(p, 4));
    }
  }
  if (levels.empty() || resnets.empty()) {
    throw FormatError(source + ": no VAE encoder." + blocks + ".N." + res + ".M tensors found");
  }
  return VaeLayout{*levels.rbegin() + 1, *resnets.rbegin() + 1};
}

std::vector<NameRow> unet_name_rows(const UNetLayout& layout) {
  using K = NameRowKind;
  std::vector<NameRow> rows = {{"time_embed.0", "time_embedding.linear_1", K::kSame},
                               {"time_embed.2", "time_embedding.linear_2", K::kSame},
                               {"input_blocks.0.0", "conv_in", K::kSame},
                               {"out.0", "conv_norm_out", K::kSame},
                               {"out.2", "conv_out", K::kSame}};
  if (layout.text_time_embedding) {
    rows.push_back({"label_emb.0.0", "add_embedding.linear_1", K::kSame});
    rows.push_back({"label_emb.0.2", "add_embedding.linear_2", K::kSame});
  }
  const int lpb = layout.layers_per_block;
  const int per = lpb + 1;
  auto s = [](int v) { return std::to_string(v); };
  for (int b = 0; b < layout.levels; ++b) {
    for (int j = 0; j < lpb; ++j) {
      const std::string in = "input_blocks." + s(1 + b * per + j);
      const std::string down = "down_blocks." + s(b);
      rows.push_back({in + ".0", down + ".resnets." + s(j), K::kUNetResnet});
      if (layout.down_attention[b]) rows.push_back({in + ".1", down + ".attentions." + s(j), K::kSame});
    }
    if (b + 1 < layout.levels) {
      rows.push_back({"input_blocks." + s((b + 1) * per) + ".0.op", "down_blocks." + s(b) + ".downsamplers.0.conv", K::kSame});
    }
  }
  rows.push_back({"middle_block.0", "mid_block.resnets.0", K::kUNetResnet});
  if (layout.mid_attention) {
    rows.push_back({"middle_block.1", "mid_block.attentions.0", K::kSame});
    rows.push_back({"middle_block.2", "mid_block.resnets.1", K::kUNetResnet});
  } else {
    rows.push_back({"middle_block.1", "mid_block.resnets.1", K::kUNetResnet});
  }
  for (int b = 0; b < layout.levels; ++b) {
    const std::string up = "up_blocks." + s(b);
    for (int j = 0; j < per; ++j) {
      const std::string out = "output_blocks." + s(b * per + j);
      rows.push_back({out + ".0", up + ".resnets." + s(j), K::kUNetResnet});
      if (layout.up_attention[b]) rows.push_back({out + ".1", up + ".attentions." + s(j), K::kSame});
    }
    if (b + 1 < layout.levels) {
      const std::string child = layout.up_attention[b] ? ".2" : ".1";
      rows.push_back({"output_blocks." + s(b * per + lpb) + child + ".conv", up + ".upsamplers.0.conv", K::kSame});
    }
  }
  return rows;
}

std::vector<NameRow> vae_name_rows(const VaeLayout& layout) {
  using K = NameRowKind;
  std::vector<NameRow> rows;
  auto s = [](int v) { return std::to_string(v); };
  for (const std::string part : {"encoder", "decoder"}) {
    rows.push_back({part + ".conv_in", part + ".conv_in", K::kSame});
    rows.push_back({part + ".norm_out", part + ".conv_norm_out", K::kSame});
    rows.push_back({part + ".conv_out", part + ".conv_out", K::kSame});
    rows.push_back({part + ".mid.block_1", part + ".mid_block.resnets.0", K::kVaeResnet});
    rows.push_back({part + ".mid.attn_1", part + ".mid_block.attentions.0", K::kVaeAttention});
    rows.push_back({part + ".mid.block_2", part + ".mid_block.resnets.1", K::kVaeResnet});
  }
  for (int i = 0; i < layout.levels; ++i) {
    for (int j = 0; j < layout.layers_per_block; ++j) {
      rows.push_back({"encoder.down." + s(i) + ".block." + s(j), "encoder.down_blocks." + s(i) + ".resnets." + s(j),
                      K::kVaeResnet});
    }
    if (i + 1 < layout.levels) {
      rows.push_back({"encoder.down." + s(i) + ".downsample.conv", "encoder.down_blocks." + s(i) + ".downsamplers.0.conv",
                      K::kSame});
    }
  }
  // The decoder's original "up" list runs from the deepest level at the highest index; diffusers'
  // up_blocks start with the deepest level.
  for (int i = 0; i < layout.levels; ++i) {
    const int orig = layout.levels - 1 - i;
    for (int j = 0; j <= layout.layers_per_block; ++j) {
      rows.push_back({"decoder.up." + s(orig) + ".block." + s(j), "decoder.up_blocks." + s(i) + ".resnets." + s(j),
                      K::kVaeResnet});
    }
    if (orig > 0) {
      rows.push_back({"decoder.up." + s(orig) + ".upsample.conv", "decoder.up_blocks." + s(i) + ".upsamplers.0.conv",
                      K::kSame});
    }
  }
  rows.push_back({"quant_conv", "quant_conv", K::kSame});
  rows.push_back({"post_quant_conv", "post_quant_conv", K::kSame});
  return rows;
}

RenameResult rename_component(const NamedTensors& input, const std::vector<NameRow>& rows, NameLayout from) {
  const bool to_diffusers = from == NameLayout::kOriginal;
  std::unordered_map<std::string, std::size_t> by_prefix;
  for (std::size_t r = 0; r < rows.size(); ++r) by_prefix[to_diffusers ? rows[r].original : rows[r].diffusers] = r;
  std::vector<bool> used(rows.size(), false);
  RenameResult result;
  for (const auto& [name, tensor] : input) {
    // Longest dotted prefix with a row.
    std::size_t row = rows.size();
    std::size_t cut = name.size();
    while (true) {
      auto it = by_prefix.find(name.substr(0, cut));
      if (it != by_prefix.end() && cut < name.size()) {
        row = it->second;
        break;
      }
      if (cut == 0) break;
      std::size_t dot = name.rfind('.', cut - 1);
      if (dot == std::string::npos) break;
      cut = dot;
    }
    if (row == rows.size()) {
      result.unmatched.push_back(name);
      continue;
    }
    const NameRow& r = rows[row];
    std::string rest = name.substr(cut + 1);  // after "prefix."
    torch::Tensor value = tensor;
    const auto& subs = sub_names(r.kind);
    if (!subs.empty()) {
      bool found = false;
      for (const auto& [orig_sub, diff_sub] : subs) {
        const std::string& src = to_diffusers ? orig_sub : diff_sub;
        const std::string& dst = to_diffusers ? diff_sub : orig_sub;
        if (starts_with(rest, src + ".") && rest.find('.', src.size() + 1) == std::string::npos) {
          rest = dst + rest.substr(src.size());
          found = true;
          break;
        }
      }
      if (!found) {
        result.unmatched.push_back(name);
        continue;
      }
      if (r.kind == NameRowKind::kVaeAttention && rest.size() > 7 && rest.compare(rest.size() - 7, 7, ".weight") == 0 &&
          !starts_with(rest, to_diffusers ? "group_norm." : "norm.")) {
        if (to_diffusers && value.dim() > 2) {
          value = value.reshape({value.size(0), value.size(1)});
        } else if (!to_diffusers && value.dim() == 2) {
          value = value.reshape({value.size(0), value.size(1), 1, 1});
        }
      }
    }
    used[row] = true;
    const std::string& target = to_diffusers ? r.diffusers : r.original;
    result.tensors[target + "." + rest] = value;
  }
  for (std::size_t r = 0; r < rows.size(); ++r) {
    if (!used[r]) result.empty_rows.push_back(to_diffusers ? rows[r].diffusers : rows[r].original);
  }
  return result;
}

RenameResult clip_original_to_diffusers(const NamedTensors& input) {
  RenameResult result;
  for (const auto& [name, tensor] : input) {
    std::string rest;
    if (starts_with(name, "transformer.text_model.")) {
      rest = name.substr(std::string("transformer.text_model.").size());
    } else if (starts_with(name, "transformer.")) {
      rest = name.substr(std::string("transformer.").size());
    } else {
      result.unmatched.push_back(name);
      continue;
    }
    if (rest == "embeddings.position_ids") continue;
    result.tensors["text_model." + rest] = tensor;
  }
  return result;
}

RenameResult clip_diffusers_to_original(const NamedTensors& input) {
  RenameResult result;
  for (const auto& [name, tensor] : input) {
    if (!starts_with(name, "text_model.")) {
      result.unmatched.push_back(name);
      continue;
    }
    if (name == "text_model.embeddings.position_ids") continue;
    result.tensors["transformer." + name] = tensor;
  }
  auto pos = input.find("text_model.embeddings.position_embedding.weight");
  if (pos != input.end()) {
    result.tensors["transformer.text_model.embeddings.position_ids"] =
        torch::arange(pos->second.size(0), torch::kInt64).unsqueeze(0);
  }
  return result;
}

std::string ldm_ema_key(const std::string& full_original_unet_key) {
  std::string out = "model_ema.";
  std::size_t dot = full_original_unet_key.find('.');
  for (std::size_t i = dot == std::string::npos ? 0 : dot + 1; i < full_original_unet_key.size(); ++i) {
    if (full_original_unet_key[i] != '.') out += full_original_unet_key[i];
  }
  return out;
}

}  // namespace sdtrain
