#pragma once
/// The trainable parameters of a module re-homed into one contiguous buffer, and their gradients
/// into another. The optimizer, the EMA, gradient allreduce buckets and checkpoints then work on a
/// few large tensors instead of ~700 small ones (one fused update instead of a per-tensor loop).
/// A 4-D parameter that is channels-last (UNet2DConditionConfig.channels_last) keeps that memory
/// layout inside the buffers: its value and gradient views have channels-last strides, so the
/// convolutions read their weights as they are and gradients accumulate without strided copies.
#include <string>
#include <vector>

#include <torch/torch.h>

#include "sdtrain/model.h"

namespace sdtrain {

/// One parameter group's elements [begin, end) of the flat buffers.
struct FlatGroup {
  ParameterGroup spec;
  int64_t begin = 0;
  int64_t end = 0;
};

class FlatParameters {
 public:
  /// Takes every parameter of `module` that requires grad, group by group (`groups` in order, see
  /// ParameterGroup; within a group in named_parameters() order), so each group is one contiguous
  /// range. They must share one dtype and device. Afterwards each parameter's data is a view into
  /// values() and its grad a view into grads(); autograd accumulates into those views in place.
  /// Do not move the module (`.to()`) afterwards. Throws ConfigError when a group takes no
  /// parameter or a parameter falls into no group.
  explicit FlatParameters(torch::nn::Module& module,
                          const std::vector<ParameterGroup>& groups = {ParameterGroup{"trainable", ""}});

  /// Parameter names, element offsets into the flat buffers, and shapes, in order.
  const std::vector<std::string>& names() const { return names_; }
  const std::vector<int64_t>& offsets() const { return offsets_; }
  const std::vector<std::vector<int64_t>>& shapes() const { return shapes_; }
  int64_t numel() const { return values_.numel(); }
  /// The module's parameters themselves (leaf tensors whose data and grad are the views), in order.
  const std::vector<torch::Tensor>& tensors() const { return parameters_; }
  /// The parameter groups' ranges, in order; together they cover the buffers.
  const std::vector<FlatGroup>& groups() const { return groups_; }

  /// The flat parameter values (1-D); writing into it changes the module's parameters.
  torch::Tensor& values() { return values_; }
  /// The flat gradients (1-D), zeroed by zero_grad().
  torch::Tensor& grads() { return grads_; }

  /// Zeroes the gradients in place (keeping the views).
  void zero_grad() { grads_.zero_(); }

  /// The view of parameter `index` in `flat` (any tensor laid out like values()), with the
  /// parameter's own strides (channels-last ones where the parameter had them).
  torch::Tensor view(const torch::Tensor& flat, std::size_t index) const;
  /// How the flat buffers order the parameters' elements: "standard" (each parameter row-major),
  /// or "channels-last" when some are stored in another memory order (channels-last 4-D
  /// weights). A flat state (the optimizer's moments) is only meaningful for the same layout.
  std::string layout() const;

 private:
  std::vector<std::string> names_;
  std::vector<int64_t> offsets_;
  std::vector<std::vector<int64_t>> shapes_;
  std::vector<std::vector<int64_t>> strides_;  ///< per parameter: its strides (dense), kept in the buffers
  bool reordered_ = false;                     ///< some parameter's memory order is not the standard one
  std::vector<torch::Tensor> parameters_;
  std::vector<FlatGroup> groups_;
  torch::Tensor values_;
  torch::Tensor grads_;
};

}  // namespace sdtrain
