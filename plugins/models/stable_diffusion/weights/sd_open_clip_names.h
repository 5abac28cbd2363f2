#pragma once
/// The table of names between OpenCLIP's text transformer (as the original single files of SD 2.x
/// hold it under "cond_stage_model.model.", and SDXL's under "conditioner.embedders.1.model.") and
/// transformers' CLIPTextModel / CLIPTextModelWithProjection, used in both directions.
///
/// OpenCLIP                                  transformers
///   token_embedding.weight                    text_model.embeddings.token_embedding.weight
///   positional_embedding                      text_model.embeddings.position_embedding.weight
///   transformer.resblocks.N.ln_1 / ln_2       text_model.encoder.layers.N.layer_norm1 / layer_norm2
///   transformer.resblocks.N.attn.in_proj_*    ...self_attn.{q,k,v}_proj.* (one fused [3C, C] tensor
///                                             split into three in q, k, v order, and back)
///   transformer.resblocks.N.attn.out_proj     ...self_attn.out_proj
///   transformer.resblocks.N.mlp.c_fc / c_proj ...mlp.fc1 / fc2
///   ln_final                                  text_model.final_layer_norm
///   text_projection [C, P]                    text_projection.weight [P, C] (transposed)
/// Names are relative to the OpenCLIP model ("token_embedding.weight", without the
/// "cond_stage_model.model." a file puts in front).
#include "plugins/models/stable_diffusion/weights/sd_name_table.h"

namespace sdtrain {

/// OpenCLIP -> transformers. Names the table does not hold (logit_scale, a vision tower) are
/// returned in `unmatched`; a fused in_proj whose first dimension is not three times its second
/// is a FormatError naming it. Values are views or copies of the inputs, never altered.
RenameResult open_clip_to_transformers(const NamedTensors& input);

/// transformers -> OpenCLIP: q, k and v projections of a layer are concatenated into the fused
/// in_proj (all three must be there, FormatError otherwise); "text_projection.weight" becomes
/// "text_projection" transposed. The position_ids buffer is dropped (OpenCLIP has none); other
/// names without a row are returned in `unmatched`.
RenameResult transformers_to_open_clip(const NamedTensors& input);

}  // namespace sdtrain
