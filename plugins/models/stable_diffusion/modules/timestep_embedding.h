#pragma once
/// Diffusion timestep embeddings: diffusers' get_timestep_embedding (Timesteps) and the
/// TimestepEmbedding MLP (linear_1 -> SiLU -> linear_2).
#include <torch/torch.h>

namespace sdtrain {

/// Sinusoidal embedding of `timesteps` ([N], any numeric dtype; fractional allowed) into
/// float32 [N, dim]: frequencies exp(-ln(max_period) * i / (dim/2 - downscale_freq_shift)),
/// halves [sin, cos] or [cos, sin] when flip_sin_to_cos; odd dims are zero padded.
torch::Tensor timestep_sinusoidal_embedding(const torch::Tensor& timesteps, int64_t dim,
                                            bool flip_sin_to_cos, double downscale_freq_shift,
                                            double scale = 1.0, double max_period = 10000.0);

/// diffusers TimestepEmbedding with act_fn "silu": keys linear_1.*, linear_2.*.
class TimestepEmbeddingImpl : public torch::nn::Module {
 public:
  TimestepEmbeddingImpl(int64_t in_channels, int64_t time_embed_dim);
  /// [N, in_channels] -> [N, time_embed_dim].
  torch::Tensor forward(const torch::Tensor& sample);

 private:
  torch::nn::Linear linear_1_{nullptr};
  torch::nn::Linear linear_2_{nullptr};
};
TORCH_MODULE(TimestepEmbedding);

}  // namespace sdtrain
