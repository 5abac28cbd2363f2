#include "plugins/models/stable_diffusion/sd_size_conditioning.h"

#include <stdexcept>
#include <string>

namespace sdtrain {

torch::Tensor size_time_ids(int64_t count, int64_t original_height, int64_t original_width, int64_t crop_top,
                            int64_t crop_left, int64_t target_height, int64_t target_width) {
  const torch::Tensor row = torch::tensor(
      {original_height, original_width, crop_top, crop_left, target_height, target_width}, torch::kFloat32);
  return row.unsqueeze(0).repeat({count, 1});
}

torch::Tensor training_size_time_ids(const std::vector<PixelsOrigin>& origins, int64_t count, int64_t height,
                                     int64_t width) {
  if (origins.empty()) return size_time_ids(count, height, width, 0, 0, height, width);
  if (static_cast<int64_t>(origins.size()) != count) {
    throw std::invalid_argument("training_size_time_ids: " + std::to_string(origins.size()) + " origins for " +
                                std::to_string(count) + " samples");
  }
  std::vector<float> rows;
  rows.reserve(static_cast<std::size_t>(count) * 6);
  for (const PixelsOrigin& origin : origins) {
    rows.insert(rows.end(), {static_cast<float>(origin.original_height), static_cast<float>(origin.original_width),
                             static_cast<float>(origin.crop_top), static_cast<float>(origin.crop_left),
                             static_cast<float>(height), static_cast<float>(width)});
  }
  return torch::tensor(rows).view({count, 6});
}

}  // namespace sdtrain
