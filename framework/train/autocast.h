#pragma once
/// Mixed-precision forward passes: an RAII scope that enables autocast (torch.autocast) for a
/// device type with the dtype of a Precision (BF16 -> bfloat16, FP16 -> float16; FP32 does
/// nothing). Inside it, eligible ops (convolutions, matmuls, linear layers) run in the lower
/// precision while the float32 weights stay the master copy; autograd casts gradients back.
/// Works for CPU as well as CUDA (recent torch supports both dtypes for CPU autocast). Run only
/// the forward pass inside the scope, as torch's AMP recipe says; backward follows outside.
#include <torch/torch.h>

#include "proto/sdtrain.pb.h"

namespace sdtrain {

/// The autocast dtype of `precision` (float32 for FP32).
torch::ScalarType autocast_dtype(Precision precision);

class AutocastScope {
 public:
  AutocastScope(Precision precision, const torch::Device& device);
  ~AutocastScope();
  AutocastScope(const AutocastScope&) = delete;
  AutocastScope& operator=(const AutocastScope&) = delete;

 private:
  bool active_ = false;
  c10::DeviceType device_type_;
  bool previous_enabled_ = false;
  torch::ScalarType previous_dtype_ = torch::kFloat32;
};

}  // namespace sdtrain
