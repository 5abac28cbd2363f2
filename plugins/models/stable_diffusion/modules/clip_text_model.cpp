#include "plugins/models/stable_diffusion/modules/clip_text_model.h"

#include "plugins/models/stable_diffusion/modules/activation_checkpoint.h"
#include "plugins/models/stable_diffusion/modules/module_config.h"

namespace sdtrain {

ClipTextEmbeddingsImpl::ClipTextEmbeddingsImpl(int64_t vocab_size, int64_t max_positions, int64_t hidden_size) {
  token_embedding_ = register_module("token_embedding", torch::nn::Embedding(vocab_size, hidden_size));
  position_embedding_ = register_module("position_embedding", torch::nn::Embedding(max_positions, hidden_size));
}

torch::Tensor ClipTextEmbeddingsImpl::forward(const torch::Tensor& input_ids) {
  const int64_t len = input_ids.size(1);
  TORCH_CHECK(len <= position_embedding_->weight.size(0), "CLIP: sequence length ", len,
              " exceeds max_position_embeddings ", position_embedding_->weight.size(0));
  auto positions = torch::arange(len, input_ids.options().dtype(torch::kLong)).unsqueeze(0);
  return token_embedding_(input_ids) + position_embedding_(positions);
}

ClipTextTransformerImpl::ClipTextTransformerImpl(const ClipTextConfig& config) : config_(config) {
  validate_clip_text_config(config);
  embeddings_ = register_module(
      "embeddings", ClipTextEmbeddings(config.vocab_size(), config.max_position_embeddings(), config.hidden_size()));
  torch::nn::ModuleList layers;
  for (int i = 0; i < config.num_hidden_layers(); ++i) {
    layers_.emplace_back(config.hidden_size(), config.intermediate_size(), config.num_attention_heads(),
                         config.layer_norm_eps(), config.hidden_act());
    layers->push_back(layers_.back());
  }
  auto encoder = std::make_shared<torch::nn::Module>();
  encoder->register_module("layers", layers);
  register_module("encoder", encoder);
  final_layer_norm_ = register_module(
      "final_layer_norm",
      torch::nn::LayerNorm(torch::nn::LayerNormOptions({config.hidden_size()}).eps(config.layer_norm_eps())));
  checkpointing_ = config.gradient_checkpointing();
}

ClipTextOutput ClipTextTransformerImpl::forward(const torch::Tensor& input_ids, const torch::Tensor& attention_mask,
                                                bool output_hidden_states) {
  TORCH_CHECK(input_ids.dim() == 2, "CLIPTextModel: input_ids must be [B, L], got ", input_ids.sizes());
  ClipTextOutput out;
  auto h = embeddings_(input_ids);
  if (output_hidden_states) out.hidden_states.push_back(h);
  const bool ckpt = should_checkpoint(checkpointing_, *this);
  for (auto& layer : layers_) {
    if (ckpt) {
      h = checkpoint([layer](const std::vector<torch::Tensor>& in) mutable { return layer->forward(in[0], in[1]); },
                     {h, attention_mask}, *layer);
    } else {
      h = layer->forward(h, attention_mask);
    }
    if (output_hidden_states) out.hidden_states.push_back(h);
  }
  out.last_hidden_state = final_layer_norm_(h);
  torch::Tensor eos_index;
  if (config_.eos_token_id() == 2) {
    eos_index = input_ids.to(torch::kInt).argmax(-1);
  } else {
    eos_index = (input_ids == config_.eos_token_id()).to(torch::kInt).argmax(-1);
  }
  auto batch_index = torch::arange(input_ids.size(0), eos_index.options().dtype(torch::kLong));
  out.pooled_output = out.last_hidden_state.index({batch_index, eos_index.to(torch::kLong)});
  return out;
}

ClipTextModelImpl::ClipTextModelImpl(const ClipTextConfig& config) : config_(config) {
  text_model_ = register_module("text_model", ClipTextTransformer(config));
  if (config.projection_dim() > 0) {
    text_projection_ = register_module(
        "text_projection",
        torch::nn::Linear(torch::nn::LinearOptions(config.hidden_size(), config.projection_dim()).bias(false)));
  }
}

ClipTextOutput ClipTextModelImpl::forward(const torch::Tensor& input_ids, const torch::Tensor& attention_mask,
                                          bool output_hidden_states) {
  ClipTextOutput out = text_model_->forward(input_ids, attention_mask, output_hidden_states);
  if (text_projection_) out.text_embeds = text_projection_(out.pooled_output);
  return out;
}

}  // namespace sdtrain
