#pragma once
/// SDXL's size micro-conditioning: the six numbers per sample its UNet's text_time embedding
/// reads (original height, original width, crop top, crop left, target height, target width), as
/// diffusers computes them: StableDiffusionXLPipeline._get_add_time_ids when sampling, and
/// train_text_to_image_sdxl.py's compute_time_ids from each training image's original size and
/// crop.
#include <cstdint>
#include <vector>

#include <torch/torch.h>

#include "sdtrain/pixel_cache.h"

namespace sdtrain {

/// `count` equal rows (original, crop top-left, target), float32 [count, 6] on the CPU.
torch::Tensor size_time_ids(int64_t count, int64_t original_height, int64_t original_width, int64_t crop_top,
                            int64_t crop_left, int64_t target_height, int64_t target_width);

/// One row per training sample of a `height` x `width` batch, float32 [count, 6] on the CPU:
/// origins[j]'s original size and crop top-left (measured as diffusers' script measures it, in the
/// resized image after the flip: PixelsOrigin). Without origins (batches made outside the
/// training loader, such as validation loss) each sample counts as an uncropped image of the
/// target size.
/// std::invalid_argument when origins is neither empty nor `count` long.
torch::Tensor training_size_time_ids(const std::vector<PixelsOrigin>& origins, int64_t count, int64_t height,
                                     int64_t width);

}  // namespace sdtrain
