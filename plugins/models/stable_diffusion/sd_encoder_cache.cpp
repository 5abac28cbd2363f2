#include "plugins/models/stable_diffusion/sd_encoder_cache.h"

#include <filesystem>

#include <ATen/autocast_mode.h>

#include "framework/util/file_util.h"

namespace sdtrain {
namespace {

std::string subfolder(const std::string& dir, const std::string& name) {
  return dir.empty() ? std::string() : (std::filesystem::path(dir) / name).string();
}

}  // namespace

std::string module_fingerprint(torch::nn::Module& module) {
  std::string summary;
  auto add = [&summary](const std::string& kind, const std::string& name, const torch::Tensor& tensor) {
    const torch::Tensor data = tensor.detach().to(torch::kCPU).contiguous();
    const auto* bytes = static_cast<const char*>(data.data_ptr());
    summary += kind + " " + name + " " + std::string(c10::toString(data.scalar_type())) + " " +
               c10::str(data.sizes()) + " " +
               sha256_hex(std::string(bytes, bytes + data.numel() * data.element_size())) + "\n";
  };
  for (const auto& item : module.named_parameters(/*recurse=*/true)) add("parameter", item.key(), item.value());
  for (const auto& item : module.named_buffers(/*recurse=*/true)) add("buffer", item.key(), item.value());
  return sha256_hex(summary);
}

std::string autocast_tag(const torch::Device& device) {
  if (!at::autocast::is_autocast_enabled(device.type())) return "fp32";
  switch (at::autocast::get_autocast_dtype(device.type())) {
    case torch::kBFloat16: return "bf16";
    case torch::kHalf: return "fp16";
    default: return "fp32";
  }
}

SdLatentCache::SdLatentCache(const std::string& dir, std::string vae, std::string precision, int64_t max_memory_bytes)
    : vae_(std::move(vae)),
      precision_(std::move(precision)),
      storage_(subfolder(dir, "latents"), "cache.dir", max_memory_bytes, "cache.max_memory_mb (latents)") {}

std::string SdLatentCache::key(const PixelsOrigin& origin) const {
  return "sd-latent-moments v1\nvae " + vae_ + "\nprecision " + precision_ + "\nsource " + origin.source +
         "\ntransform " + origin.transform;
}

torch::Tensor SdLatentCache::find(const PixelsOrigin& origin) const {
  if (!origin.deterministic) return {};
  return storage_.get(key(origin));
}

void SdLatentCache::store(const PixelsOrigin& origin, const torch::Tensor& moments) {
  if (origin.deterministic) storage_.put(key(origin), moments);
}

SdTextCache::SdTextCache(const std::string& dir, std::string text_encoder, std::string precision,
                         int64_t max_memory_bytes)
    : text_encoder_(std::move(text_encoder)),
      precision_(std::move(precision)),
      storage_(subfolder(dir, "text_embeddings"), "cache.dir", max_memory_bytes,
               "cache.max_memory_mb (text embeddings)") {}

std::string SdTextCache::key(const std::string& caption) const {
  return "sd-text-embedding v1\ntext_encoder " + text_encoder_ + "\nprecision " + precision_ + "\ncaption " + caption;
}

torch::Tensor SdTextCache::find(const std::string& caption) const { return storage_.get(key(caption)); }

void SdTextCache::store(const std::string& caption, const torch::Tensor& embedding) {
  storage_.put(key(caption), embedding);
}

}  // namespace sdtrain
