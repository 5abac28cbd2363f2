#include "plugins/models/stable_diffusion/sd_conditioning_fit.h"

namespace sdtrain {

std::optional<ConditioningMisfit> conditioning_misfit(const UNet2DConditionConfig& unet,
                                                      const ClipTextConfig& text_encoder,
                                                      const ClipTextConfig* text_encoder_2) {
  const auto number = [](int64_t value) { return std::to_string(value); };
  if (!unet.addition_embed_type().empty() && text_encoder_2 == nullptr) {
    return ConditioningMisfit{"unet.addition_embed_type", "\"" + unet.addition_embed_type() +
                                                              "\" (SDXL's conditioning) needs text_encoder_2, SDXL's "
                                                              "second text encoder, which the model does not have"};
  }
  const int64_t first = text_encoder.hidden_size();
  const int64_t width = first + (text_encoder_2 ? text_encoder_2->hidden_size() : 0);
  if (unet.cross_attention_dim() != width) {
    return ConditioningMisfit{
        "unet.cross_attention_dim",
        number(unet.cross_attention_dim()) + " must equal text_encoder.hidden_size " + number(first) +
            (text_encoder_2 ? " + text_encoder_2.hidden_size " + number(text_encoder_2->hidden_size()) + " = " + number(width)
                            : "")};
  }
  if (text_encoder_2 == nullptr) return std::nullopt;
  if (unet.addition_embed_type() != "text_time") {
    return ConditioningMisfit{"unet.addition_embed_type", "must be \"text_time\" with text_encoder_2 (SDXL); it is \"" +
                                                              unet.addition_embed_type() + "\""};
  }
  const int64_t pooled = text_encoder_2->projection_dim();
  if (pooled <= 0) {
    return ConditioningMisfit{"text_encoder_2.projection_dim", "must be > 0 (SDXL pools through the projection)"};
  }
  const int64_t expected = pooled + 6 * unet.addition_time_embed_dim();
  if (unet.projection_class_embeddings_input_dim() != expected) {
    return ConditioningMisfit{"unet.projection_class_embeddings_input_dim",
                              number(unet.projection_class_embeddings_input_dim()) +
                                  " must equal text_encoder_2.projection_dim " + number(pooled) +
                                  " + 6 x unet.addition_time_embed_dim " + number(unet.addition_time_embed_dim()) +
                                  " = " + number(expected)};
  }
  return std::nullopt;
}

}  // namespace sdtrain
