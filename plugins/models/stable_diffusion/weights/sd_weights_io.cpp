#include "plugins/models/stable_diffusion/weights/sd_weights_io.h"


#include <algorithm>
#include <cctype>
#include <filesystem>

#include "framework/io/atomic_file.h"
#include "framework/io/ckpt_reader.h"
#include "framework/io/ckpt_writer.h"
#include "framework/io/safetensors_reader.h"
#include "framework/io/safetensors_writer.h"
#include "framework/util/file_util.h"
#include "plugins/models/stable_diffusion/weights/sd_diffusers_config.h"
#include "plugins/models/stable_diffusion/weights/sd_tokenizer_files.h"
#include "sdtrain/errors.h"
#include "sdtrain/log.h"

namespace sdtrain {
namespace fs = std::filesystem;
namespace {

/// Metadata keys under which single .safetensors files carry the diffusers configs.
const char* const kConfigMetadataPrefix = "sdtrain.config.";
const char* const kComponents[] = {"unet", "vae", "text_encoder", "text_encoder_2", "scheduler"};

std::string lower_extension(const std::string& path) {
  std::string ext = fs::path(path).extension().string();
  std::transform(ext.begin(), ext.end(), ext.begin(), [](unsigned char c) { return std::tolower(c); });
  return ext;
}

bool starts_with(const std::string& s, const std::string& prefix) { return s.compare(0, prefix.size(), prefix) == 0; }

NamedTensors read_safetensors(const std::string& path, std::map<std::string, std::string>* metadata = nullptr) {
  if (!fs::is_regular_file(path)) throw FormatError(path + ": file not found");
  SafetensorsReader reader(path);
  if (metadata) *metadata = reader.metadata();
  NamedTensors out;
  for (auto& [name, tensor] : reader.tensors()) out[name] = tensor;
  return out;
}

/// Reads "<folder>/<component>/<file>", refusing the pickle-only .bin layout by name.
NamedTensors read_component(const fs::path& folder, const std::string& component, const std::string& file) {
  const fs::path path = folder / component / file;
  if (!fs::exists(path)) {
    fs::path bin = path;
    bin.replace_extension(".bin");
    const std::string hint = fs::exists(bin) ? " (only .safetensors is read; " + bin.string() + " is pickle)" : "";
    throw FormatError(folder.string() + ": diffusers folder has no " + (fs::path(component) / file).string() + hint);
  }
  return read_safetensors(path.string());
}

/// transformers >= 5.6 saves CLIPTextModel without the "text_model." prefix; old files carry a
/// position_ids buffer. Both normalise to the prefixed names without the buffer.
/// CLIPTextModelWithProjection's text_projection sits beside text_model, never inside it.
NamedTensors normalise_text_encoder(const NamedTensors& in) {
  NamedTensors out;
  for (const auto& [name, tensor] : in) {
    std::string key =
        starts_with(name, "text_model.") || starts_with(name, "text_projection.") ? name : "text_model." + name;
    if (key == "text_model.embeddings.position_ids") continue;
    out[key] = tensor;
  }
  return out;
}

/// diffusers < 0.14 named the VAE mid attention query/key/value/proj_attn.
NamedTensors normalise_vae(const NamedTensors& in) {
  static const std::pair<const char*, const char*> legacy[] = {
      {".query.", ".to_q."}, {".key.", ".to_k."}, {".value.", ".to_v."}, {".proj_attn.", ".to_out.0."}};
  NamedTensors out;
  for (const auto& [name, tensor] : in) {
    std::string key = name;
    torch::Tensor value = tensor;
    if (key.find(".attentions.") != std::string::npos) {
      for (const auto& [old_name, new_name] : legacy) {
        std::size_t at = key.find(old_name);
        if (at != std::string::npos) {
          key = key.substr(0, at) + new_name + key.substr(at + std::string(old_name).size());
          if (value.dim() > 2) value = value.reshape({value.size(0), value.size(1)});
        }
      }
    }
    out[key] = value;
  }
  return out;
}

/// Checks that every diffusers name has an original counterpart and no module is empty.
void check_diffusers_names(const SdWeights& w, WeightIssues* issues) {
  auto keys = [](const NamedTensors& m) {
    std::vector<std::string> k;
    for (const auto& [name, t] : m) k.push_back(name);
    return k;
  };
  auto check = [&](const NamedTensors& map, const std::vector<NameRow>& rows, const std::string& component) {
    RenameResult r = rename_component(map, rows, NameLayout::kDiffusers);
    for (const auto& name : r.unmatched) issues->unexpected.push_back(component + "." + name);
    for (const auto& row : r.empty_rows) issues->missing.push_back(component + "." + row + ".*");
  };
  check(w.unet, unet_name_rows(infer_unet_layout(keys(w.unet), NameLayout::kDiffusers, "unet")), "unet");
  check(w.vae, vae_name_rows(infer_vae_layout(keys(w.vae), NameLayout::kDiffusers, "vae")), "vae");
  RenameResult clip = text_encoders_to_original(w);
  issues->unexpected.insert(issues->unexpected.end(), clip.unmatched.begin(), clip.unmatched.end());
}

SdWeights load_diffusers_folder(const std::string& path, bool use_ema, WeightIssues* issues) {
  const fs::path folder(path);
  if (!fs::exists(folder / "model_index.json")) {
    throw FormatError(path + ": a directory but not a diffusers folder (no model_index.json)");
  }
  SdWeights w;
  w.unet = read_component(folder, "unet", "diffusion_pytorch_model.safetensors");
  w.vae = normalise_vae(read_component(folder, "vae", "diffusion_pytorch_model.safetensors"));
  w.text_encoder = normalise_text_encoder(read_component(folder, "text_encoder", "model.safetensors"));
  if (fs::exists(folder / "text_encoder_2")) {  // StableDiffusionXLPipeline
    w.text_encoder_2 = normalise_text_encoder(read_component(folder, "text_encoder_2", "model.safetensors"));
  }
  // The configs are optional; an empty one counts as absent.
  static const std::pair<const char*, const char*> kConfigFiles[] = {
      {"unet", "config.json"}, {"vae", "config.json"}, {"text_encoder", "config.json"},
      {"text_encoder_2", "config.json"}, {"scheduler", "scheduler_config.json"}};
  for (const auto& [component, file] : kConfigFiles) {
    const fs::path config = folder / component / file;
    if (!fs::exists(config)) continue;
    std::string text = read_file<FormatError>(config.string());
    if (!text.empty()) w.configs[component] = std::move(text);
  }
  auto tokenizer_folder = [&](const char* name) {
    const fs::path dir = folder / name;
    return fs::exists(dir / "tokenizer_config.json") || fs::exists(dir / "vocab.json") ? dir.string() : std::string();
  };
  w.tokenizer_dir = tokenizer_folder("tokenizer");
  w.tokenizer_2_dir = tokenizer_folder("tokenizer_2");
  if (use_ema) log_line(LogLevel::WARNING, path + ": a diffusers folder holds no EMA weights; using its UNet");
  check_diffusers_names(w, issues);
  return w;
}

void write_text(const fs::path& path, const std::string& text) { write_file_atomic(path.string(), text); }

std::vector<std::pair<std::string, torch::Tensor>> as_list(const NamedTensors& map) {
  return {map.begin(), map.end()};
}

/// Writes `<temp>/<name>`: a copy of `source_dir`, else CLIP's files padding with `pad_token` when
/// the text encoder has CLIP's vocabulary. False (and a warning) when neither applies.
bool write_tokenizer(const fs::path& temp, const char* name, const std::string& source_dir, const NamedTensors& encoder,
                     const std::string& pad_token, const std::string& path) {
  if (!source_dir.empty()) {
    fs::copy(source_dir, temp / name, fs::copy_options::recursive);
    return true;
  }
  auto token = encoder.find("text_model.embeddings.token_embedding.weight");
  if (token == encoder.end() || token->second.size(0) != clip_tokenizer_vocab_size()) {
    log_line(LogLevel::WARNING, path + ": no " + name + " written (the text encoder's vocabulary is not CLIP's 49408 "
                                       "tokens and no tokenizer folder was given)");
    return false;
  }
  fs::create_directories(temp / name);
  write_clip_tokenizer_files((temp / name).string(), pad_token);
  return true;
}

void save_diffusers_folder(const SdWeights& w, const std::string& path) {
  // Every file below goes through AtomicFile (fsynced with its directory); write_folder_atomic
  // publishes the folder at once.
  write_folder_atomic(path, [&](const std::string& temp_dir) {
    const fs::path temp(temp_dir);
    const std::map<std::string, std::string> pt = {{"format", "pt"}};
    auto component = [&](const char* name, const char* file, const NamedTensors& tensors) {
      fs::create_directories(temp / name);
      save_safetensors((temp / name / file).string(), as_list(tensors), pt);
      write_text(temp / name / "config.json", component_config_json(w, name));
    };
    component("unet", "diffusion_pytorch_model.safetensors", w.unet);
    component("vae", "diffusion_pytorch_model.safetensors", w.vae);
    component("text_encoder", "model.safetensors", w.text_encoder);
    if (w.is_sdxl()) component("text_encoder_2", "model.safetensors", w.text_encoder_2);
    fs::create_directories(temp / "scheduler");
    write_text(temp / "scheduler" / "scheduler_config.json", component_config_json(w, "scheduler"));
    bool tokenizers = write_tokenizer(temp, "tokenizer", w.tokenizer_dir, w.text_encoder, default_pad_token(w), path);
    if (w.is_sdxl()) {
      // SDXL's second tokenizer is OpenCLIP's: it pads with "!" (id 0).
      tokenizers = write_tokenizer(temp, "tokenizer_2", w.tokenizer_2_dir, w.text_encoder_2, "!", path) && tokenizers;
    }
    write_text(temp / "model_index.json", w.is_sdxl() ? sdxl_model_index_json(tokenizers) : sd_model_index_json(tokenizers));
  });
}

}  // namespace

const char* sd_format_name(SdFormat format) {
  switch (format) {
    case SdFormat::kCkpt: return "ckpt";
    case SdFormat::kSafetensors: return "safetensors";
    default: return "diffusers";
  }
}

SdFormat parse_sd_format(const std::string& name) {
  if (name == "ckpt") return SdFormat::kCkpt;
  if (name == "safetensors") return SdFormat::kSafetensors;
  if (name == "diffusers") return SdFormat::kDiffusers;
  throw ConfigError("unknown weights format '" + name + "' (expected ckpt, safetensors or diffusers)");
}

SdFormat detect_input_format(const std::string& path) {
  if (!fs::exists(path)) throw FormatError(path + ": no such file or directory");
  if (fs::is_directory(path)) {
    if (!fs::exists(fs::path(path) / "model_index.json")) {
      throw FormatError(path + ": a directory but not a diffusers folder (no model_index.json)");
    }
    return SdFormat::kDiffusers;
  }
  const std::string ext = lower_extension(path);
  if (ext == ".safetensors") return SdFormat::kSafetensors;
  if (ext == ".ckpt" || ext == ".pt" || ext == ".pth") return SdFormat::kCkpt;
  throw FormatError(path + ": unknown weights format (expected .ckpt, .safetensors or a diffusers folder)");
}

SdFormat output_format_from_name(const std::string& path) {
  const std::string ext = lower_extension(path);
  if (ext == ".safetensors") return SdFormat::kSafetensors;
  if (ext == ".ckpt" || ext == ".pt" || ext == ".pth") return SdFormat::kCkpt;
  return SdFormat::kDiffusers;
}

SdWeights load_sd_weights(const std::string& path, const SdLoadOptions& options, WeightIssues* issues) {
  WeightIssues found;
  SdWeights weights;
  switch (detect_input_format(path)) {
    case SdFormat::kDiffusers:
      weights = load_diffusers_folder(path, options.use_ema, &found);
      break;
    case SdFormat::kSafetensors: {
      std::map<std::string, std::string> metadata;
      NamedTensors state = read_safetensors(path, &metadata);
      weights = sd_weights_from_original(state, options.use_ema, path, &found);
      for (const char* component : kComponents) {
        auto it = metadata.find(std::string(kConfigMetadataPrefix) + component);
        if (it != metadata.end()) weights.configs[component] = it->second;
      }
      break;
    }
    case SdFormat::kCkpt: {
      NamedTensors state;
      for (auto& [name, tensor] : load_ckpt_state_dict(path)) state[name] = tensor;
      weights = sd_weights_from_original(state, options.use_ema, path, &found);
      break;
    }
  }
  if (!found.empty()) {
    if (options.strict) throw FormatError(path + ": weights do not match the Stable Diffusion layout:\n" + found.describe());
    log_line(LogLevel::WARNING, path + ": loading non-strictly despite:\n" + found.describe());
  }
  if (issues) issues->append(found);
  return weights;
}

void save_sd_weights(const SdWeights& input, const std::string& path, SdFormat format, const SdSaveOptions& options) {
  if (fs::exists(path)) throw FormatError(path + ": exists; refusing to overwrite it");
  SdWeights half;
  if (options.half) {
    half = input;
    cast_sd_weights(half, torch::kFloat16);
  }
  const SdWeights& weights = options.half ? half : input;
  switch (format) {
    case SdFormat::kDiffusers:
      save_diffusers_folder(weights, path);
      break;
    case SdFormat::kSafetensors: {
      std::map<std::string, std::string> metadata = {{"format", "pt"}};
      for (const auto& [component, text] : weights.configs) metadata[kConfigMetadataPrefix + component] = text;
      save_safetensors(path, as_list(sd_weights_to_original(weights)), metadata, /*overwrite=*/false);
      break;
    }
    case SdFormat::kCkpt:
      save_ckpt_state_dict(path, as_list(sd_weights_to_original(weights)), {}, /*overwrite=*/false);
      break;
  }
}

}  // namespace sdtrain
