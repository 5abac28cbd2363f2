#pragma once
/// Registering a plugin: what its factory is given, the registration macros and the version stamp
/// of a plugin library.
///
/// A plugin is a class implementing one family's interface (model.h, dataset.h,
/// noise_scheduler.h, lr_schedule.h, callback.h) plus a factory that builds it from its own
/// options message (a protobuf message the plugin defines) and a PluginContext:
///
///   SDTRAIN_REGISTER_DATASET("caption_files", CaptionFilesOptions, "images with .txt captions",
///                            [](const CaptionFilesOptions& options, const sdtrain::PluginContext& context) {
///                              return std::make_unique<CaptionFilesDataset>(options, context.base_dir);
///                            });
///
/// A config names the plugin by its name and carries its options (`type: "caption_files"
/// options { [type.googleapis.com/CaptionFilesOptions] { ... } }`). Registration runs while the
/// library loads; a library built outside sdtrain also needs SDTRAIN_PLUGIN_LIBRARY() in exactly
/// one of its .cpp files, and sdtrain refuses it when its stamp differs from sdtrain's own.
/// A factory reports a bad option by throwing ConfigError naming the option field (errors.h);
/// sdtrain prefixes the config path.
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include <google/protobuf/descriptor.h>
#include <google/protobuf/message.h>
#include <torch/types.h>
#include <torch/version.h>

#include "sdtrain/version.h"

namespace sdtrain {

class Dataset;
class Model;
class NoiseScheduler;
class LrSchedule;
class Callback;

/// What every plugin factory is given besides its own options: the facts of the run a plugin may
/// depend on, and nothing of the run's config beyond them.
struct PluginContext {
  /// Directory against which relative paths in the options are resolved (the config's folder).
  std::string base_dir = ".";
  int rank = 0;
  int world_size = 1;
  /// Where the run trains (the rank's GPU or the CPU).
  torch::Device device = torch::kCPU;
  /// The dtype the run's mixed precision computes in: kFloat (fp32), kHalf (fp16) or kBFloat16
  /// (bf16). A model may hold its frozen parts in it.
  torch::ScalarType compute_dtype = torch::kFloat;
  /// The run's optimizer step limit (run.max_steps), for schedules that span the run; 0 when the
  /// run has none or the plugin is built outside a run (sdsample).
  std::int64_t max_steps = 0;
};

/// One registered type, as `sdtrain --list-plugins` shows it.
struct PluginEntry {
  std::string name;
  std::string description;  ///< one line
  /// The options message this plugin takes (never null).
  const google::protobuf::Descriptor* options_type = nullptr;
  /// The library that registered it ("" for built-ins).
  std::string library;
};

/// Builds a plugin of family `Interface` from its options (of the entry's options_type).
template <class Interface>
using PluginFactory =
    std::function<std::unique_ptr<Interface>(const google::protobuf::Message& options, const PluginContext& context)>;

/// Adds a type to the process-wide registry of family `Interface` (one of the five above).
/// Throws PluginError if the name is taken in that family. While a plugin library loads, its
/// entries are held back until the library passed its version check.
template <class Interface>
void register_plugin(PluginEntry entry, PluginFactory<Interface> factory);

extern template void register_plugin<Dataset>(PluginEntry, PluginFactory<Dataset>);
extern template void register_plugin<Model>(PluginEntry, PluginFactory<Model>);
extern template void register_plugin<NoiseScheduler>(PluginEntry, PluginFactory<NoiseScheduler>);
extern template void register_plugin<LrSchedule>(PluginEntry, PluginFactory<LrSchedule>);
extern template void register_plugin<Callback>(PluginEntry, PluginFactory<Callback>);

/// Registers, at static-initialisation time, a factory that takes the concrete options type.
template <class Interface, class Options>
class Registrar {
 public:
  using TypedFactory = std::function<std::unique_ptr<Interface>(const Options&, const PluginContext&)>;
  Registrar(const char* name, const char* description, TypedFactory factory) {
    PluginEntry entry;
    entry.name = name;
    entry.description = description;
    entry.options_type = Options::descriptor();
    register_plugin<Interface>(std::move(entry), [factory = std::move(factory)](
                                                     const google::protobuf::Message& options,
                                                     const PluginContext& context) {
      return factory(static_cast<const Options&>(options), context);
    });
  }
};

}  // namespace sdtrain

extern "C" {
/// The stamp a plugin library carries. All strings are static.
struct SdtrainPluginInfo {
  const char* plugin_abi;        ///< SDTRAIN_PLUGIN_ABI the library was built with
  const char* sdtrain_version;   ///< SDTRAIN_VERSION_STRING the library was built with
  int torch_version_major;       ///< TORCH_VERSION_MAJOR the library was built with
  int torch_version_minor;       ///< TORCH_VERSION_MINOR the library was built with
};
}

/// The symbol sdtrain looks up in a plugin library.
#define SDTRAIN_PLUGIN_INFO_SYMBOL "sdtrain_plugin_info"

/// Put once in an external plugin library's sources.
#define SDTRAIN_PLUGIN_LIBRARY()                                                            \
  extern "C" __attribute__((visibility("default"))) const SdtrainPluginInfo*               \
  sdtrain_plugin_info() {                                                                   \
    static const SdtrainPluginInfo info{SDTRAIN_PLUGIN_ABI, SDTRAIN_VERSION_STRING,         \
                                        TORCH_VERSION_MAJOR, TORCH_VERSION_MINOR};          \
    return &info;                                                                           \
  }

#define SDTRAIN_INTERNAL_CONCAT2(a, b) a##b
#define SDTRAIN_INTERNAL_CONCAT(a, b) SDTRAIN_INTERNAL_CONCAT2(a, b)

/// SDTRAIN_REGISTER_PLUGIN(Interface, "name", OptionsMessage, "one-line description", factory)
/// where factory is callable as std::unique_ptr<Interface>(const OptionsMessage&, const PluginContext&).
#define SDTRAIN_REGISTER_PLUGIN(Interface, name, Options, description, factory) \
  static const ::sdtrain::Registrar<Interface, Options> SDTRAIN_INTERNAL_CONCAT( \
      sdtrain_registrar_, __COUNTER__)(name, description, factory)

#define SDTRAIN_REGISTER_DATASET(name, Options, description, factory) \
  SDTRAIN_REGISTER_PLUGIN(::sdtrain::Dataset, name, Options, description, factory)
#define SDTRAIN_REGISTER_MODEL(name, Options, description, factory) \
  SDTRAIN_REGISTER_PLUGIN(::sdtrain::Model, name, Options, description, factory)
#define SDTRAIN_REGISTER_SCHEDULER(name, Options, description, factory) \
  SDTRAIN_REGISTER_PLUGIN(::sdtrain::NoiseScheduler, name, Options, description, factory)
#define SDTRAIN_REGISTER_LR_SCHEDULE(name, Options, description, factory) \
  SDTRAIN_REGISTER_PLUGIN(::sdtrain::LrSchedule, name, Options, description, factory)
#define SDTRAIN_REGISTER_CALLBACK(name, Options, description, factory) \
  SDTRAIN_REGISTER_PLUGIN(::sdtrain::Callback, name, Options, description, factory)
