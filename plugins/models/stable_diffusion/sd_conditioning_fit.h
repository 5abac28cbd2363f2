#pragma once
/// Whether a UNet takes the conditioning its text encoder(s) give. One rule for the model's
/// options (StableDiffusionModel: a ConfigError) and for the configs of a weights folder or file
/// (SdPipeline: a FormatError naming the file): the context is as wide as the encoders' hidden
/// sizes together, SDXL's text_time embedding is there exactly when a second encoder is, and it
/// takes that encoder's projection plus 6 size embeddings.
#include <optional>
#include <string>

#include "plugins/models/stable_diffusion/sd_modules.pb.h"

namespace sdtrain {

/// What does not fit: `field` is the option at fault ("unet.cross_attention_dim",
/// "unet.addition_embed_type", "text_encoder_2.projection_dim",
/// "unet.projection_class_embeddings_input_dim"), `message` says what it should be, naming the
/// fields it depends on ("32 must equal text_encoder.hidden_size 32 + text_encoder_2.hidden_size
/// 48 = 80").
struct ConditioningMisfit {
  std::string field;
  std::string message;
  /// "<field>: <message>".
  std::string text() const { return field + ": " + message; }
};

/// The first misfit, or none. `text_encoder_2` is null for a model with one encoder.
std::optional<ConditioningMisfit> conditioning_misfit(const UNet2DConditionConfig& unet,
                                                      const ClipTextConfig& text_encoder,
                                                      const ClipTextConfig* text_encoder_2);

}  // namespace sdtrain
