#pragma once
/// Helpers shared by the SD module parity tests: fixture paths, the fixtures' tensor files (read
/// by the restricted unpickler), JSON configs into the protos, and tensor comparison relative to
/// the reference's scale.
#include <cstdlib>
#include <string>

#include <google/protobuf/util/json_util.h>
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "framework/io/ckpt_reader.h"
#include "framework/util/file_util.h"
#include "plugins/models/stable_diffusion/modules/state_dict_loader.h"
#include "plugins/models/stable_diffusion/modules/unet_2d_condition_model.h"
#include "plugins/models/stable_diffusion/weights/sd_component_configs.h"

namespace sdtrain::testing {

/// $SDTRAIN_FIXTURE_DIR/<fixture>/<file>.
inline std::string fixture_path(const std::string& fixture, const std::string& file) {
  const char* dir = std::getenv("SDTRAIN_FIXTURE_DIR");
  return std::string(dir ? dir : "test_fixtures") + "/" + fixture + "/" + file;
}

/// The tensors of a file make_module_fixtures.py wrote (torch.save of a dict of tensors), read
/// through sdtrain's restricted unpickler: any entry that is not a tensor is an error.
inline TensorMap read_tensor_file(const std::string& path) {
  TensorMap out;
  for (auto& [name, tensor] : load_ckpt_state_dict(path)) out.emplace(name, std::move(tensor));
  return out;
}

/// Parses a JSON file (proto field names) into a config message; fails the test on a parse error
/// (an unreadable file throws, naming it).
template <typename Message>
Message read_json_config(const std::string& path) {
  Message message;
  auto status = google::protobuf::util::JsonStringToMessage(read_file(path), &message);
  EXPECT_TRUE(status.ok()) << path << ": " << status.ToString();
  return message;
}

/// A UNet config.json in diffusers' keys (per-block lists or scalars), through sdtrain's reader.
inline UNet2DConditionConfig read_unet_config(const std::string& path) {
  return unet_config_from_json(read_file(path), path);
}

/// max |actual - expected| / max(max |expected|, 1e-6); the parity criterion.
inline double relative_max_diff(const torch::Tensor& actual, const torch::Tensor& expected) {
  auto a = actual.detach().to(torch::kFloat64);
  auto e = expected.detach().to(torch::kFloat64);
  const double scale = std::max(e.abs().max().item<double>(), 1e-6);
  return (a - e).abs().max().item<double>() / scale;
}

/// Expects equal shapes and relative max diff <= tol.
inline void expect_close(const torch::Tensor& actual, const torch::Tensor& expected, double tol,
                         const std::string& what) {
  ASSERT_TRUE(actual.defined()) << what << ": undefined";
  ASSERT_EQ(actual.sizes(), expected.sizes()) << what;
  const double diff = relative_max_diff(actual, expected);
  EXPECT_LE(diff, tol) << what << ": relative max diff " << diff;
}

/// The sd_modules fixture's tiny UNet, its config changed by `adjust`, weights drawn from seed 3,
/// in training mode (the training-step tests compare two such UNets differing in one option).
template <typename Adjust>
UNet2DConditionModel tiny_training_unet(Adjust adjust) {
  UNet2DConditionConfig config =
      read_unet_config(fixture_path("sd_modules", "unet_config.json"));
  adjust(config);
  torch::manual_seed(3);
  UNet2DConditionModel unet(config);
  unet->train();
  return unet;
}

}  // namespace sdtrain::testing
