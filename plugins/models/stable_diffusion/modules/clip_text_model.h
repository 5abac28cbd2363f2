#pragma once
/// transformers CLIPTextModel (SD v1's text encoder) from a ClipTextConfig (empty = SD v1,
/// CLIP ViT-L/14), or CLIPTextModelWithProjection with config.projection_dim > 0 (SDXL's OpenCLIP
/// ViT-bigG). Keys: text_model.embeddings.{token,position}_embedding.weight,
/// text_model.encoder.layers.N.*, text_model.final_layer_norm.*, text_projection.weight (with a
/// projection; position_ids is not a buffer, as it is non-persistent in transformers).
#include <vector>

#include <torch/torch.h>

#include "plugins/models/stable_diffusion/modules/clip_encoder_layer.h"
#include "plugins/models/stable_diffusion/sd_modules.pb.h"

namespace sdtrain {

/// The encoder's outputs.
struct ClipTextOutput {
  torch::Tensor last_hidden_state;           ///< [B, L, hidden] after final_layer_norm (SD v1 uses this)
  torch::Tensor pooled_output;               ///< [B, hidden] at the EOS position
  torch::Tensor text_embeds;                 ///< [B, projection_dim]: text_projection(pooled_output),
                                             ///< only with a projection (SDXL's second encoder)
  std::vector<torch::Tensor> hidden_states;  ///< embeddings + every layer's output (before the
                                             ///< final norm); filled only when requested
};

/// transformers CLIPTextEmbeddings. Keys: token_embedding, position_embedding.
class ClipTextEmbeddingsImpl : public torch::nn::Module {
 public:
  ClipTextEmbeddingsImpl(int64_t vocab_size, int64_t max_positions, int64_t hidden_size);
  /// ids [B, L] (int64, L <= max_positions) -> [B, L, hidden].
  torch::Tensor forward(const torch::Tensor& input_ids);

 private:
  torch::nn::Embedding token_embedding_{nullptr}, position_embedding_{nullptr};
};
TORCH_MODULE(ClipTextEmbeddings);

/// transformers CLIPTextTransformer. Keys: embeddings, encoder.layers.N, final_layer_norm.
class ClipTextTransformerImpl : public torch::nn::Module {
 public:
  explicit ClipTextTransformerImpl(const ClipTextConfig& config);
  ClipTextOutput forward(const torch::Tensor& input_ids, const torch::Tensor& attention_mask,
                         bool output_hidden_states);
  void set_gradient_checkpointing(bool enabled) { checkpointing_ = enabled; }

 private:
  ClipTextConfig config_;
  bool checkpointing_ = false;
  ClipTextEmbeddings embeddings_{nullptr};
  std::vector<ClipEncoderLayer> layers_;
  torch::nn::LayerNorm final_layer_norm_{nullptr};
};
TORCH_MODULE(ClipTextTransformer);

class ClipTextModelImpl : public torch::nn::Module {
 public:
  /// @throws ConfigError when the config is inconsistent.
  explicit ClipTextModelImpl(const ClipTextConfig& config = {});
  /// input_ids [B, L] int64 token ids; attention_mask [B, L] (1 keep, 0 pad) or undefined (SD v1
  /// passes none: padding is EOS and attention is causal). hidden_states are collected when
  /// output_hidden_states (e.g. for "clip skip").
  ClipTextOutput forward(const torch::Tensor& input_ids, const torch::Tensor& attention_mask = {},
                         bool output_hidden_states = false);
  void set_gradient_checkpointing(bool enabled) { text_model_->set_gradient_checkpointing(enabled); }
  const ClipTextConfig& config() const { return config_; }

 private:
  ClipTextConfig config_;
  ClipTextTransformer text_model_{nullptr};
  torch::nn::Linear text_projection_{nullptr};  ///< projection_dim > 0 only
};
TORCH_MODULE(ClipTextModel);

}  // namespace sdtrain
