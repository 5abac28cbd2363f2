#pragma once
// Builds dataset plugins through the registry, as a run does.
#include <memory>
#include <string>

#include "framework/registry/registry.h"
#include "plugins/builtin_plugins.h"
#include "plugins/datasets/datasets.pb.h"
#include "sdtrain/dataset.h"
#include "sdtrain/errors.h"
#include "tests/common/test_images.h"

namespace sdtrain::testing {

inline std::unique_ptr<Dataset> make_dataset(const std::string& type, const google::protobuf::Message& options,
                                             const PluginContext& context = {}) {
  anchor_builtin_plugins();  // keeps libsdtrain_plugins (and its registrars) linked in
  PluginSpec spec;
  spec.set_type(type);
  spec.mutable_options()->PackFrom(options);
  return Registry<Dataset>::instance().create(spec, context, "data.train");
}

/// The ConfigError message of building `type`, or "" if it built.
inline std::string config_error(const std::string& type, const google::protobuf::Message& options,
                                const PluginContext& context = {}) {
  try {
    make_dataset(type, options, context);
  } catch (const ConfigError& error) {
    return error.what();
  }
  return "";
}

/// The DataError message of dataset.get(index), or "" when it succeeds.
inline std::string data_error(const Dataset& dataset, std::size_t index) {
  try {
    dataset.get(index);
  } catch (const DataError& error) {
    return error.what();
  }
  return "";
}

}  // namespace sdtrain::testing
