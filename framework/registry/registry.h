#pragma once
/// Typed factories by name, one registry per plugin family.
///
/// A plugin registers itself with one of the SDTRAIN_REGISTER_* macros below in any .cpp of a
/// shared library (built-in plugins live in libsdtrain_plugins; external ones are dlopen'ed, see
/// plugin_loader.h). The registry's storage lives in libsdtrain, so every library sees one map.
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <google/protobuf/descriptor.h>
#include <google/protobuf/message.h>

#include "proto/sdtrain.pb.h"

namespace sdtrain {

class Dataset;
class Model;
class NoiseScheduler;
class LrSchedule;
class Callback;

/// What every plugin factory is given besides its own options.
struct PluginContext {
  /// The run's config; null when a tool (sdsample, sdconvert) builds a plugin outside a run.
  const TrainConfig* config = nullptr;
  /// Directory against which relative paths in the options are resolved (the config's folder).
  std::string base_dir = ".";
  int rank = 0;
  int world_size = 1;
};

/// One registered type.
struct PluginEntry {
  std::string name;
  std::string description;  ///< one line, shown by `sdtrain --list-plugins`
  /// The options message this plugin takes (never null).
  const google::protobuf::Descriptor* options_type = nullptr;
  /// The library that registered it ("" for built-ins).
  std::string library;
};

/// Registry of one plugin family. Thread-compatible: registration happens while libraries load,
/// before any concurrent use.
template <class Interface>
class Registry {
 public:
  using Factory = std::function<std::unique_ptr<Interface>(const google::protobuf::Message& options,
                                                           const PluginContext& context)>;

  /// The process-wide registry of this family.
  static Registry& instance();

  /// Family name used in messages: "model", "dataset", "scheduler", "lr_schedule", "callback".
  static const char* family();

  /// Adds a type. Throws PluginError if `entry.name` is taken. While a plugin library is being
  /// loaded the entry is held back until the library passed its version check.
  void add(PluginEntry entry, Factory factory);

  /// The entry for `name`, or nullptr.
  const PluginEntry* find(const std::string& name) const;

  /// All entries, sorted by name.
  std::vector<PluginEntry> entries() const;

  /// Checks that `spec` names a registered type and carries options of its type, without building
  /// anything. Throws ConfigError as create() does.
  void check(const PluginSpec& spec, const std::string& where) const;

  /// Builds the plugin named by `spec.type()` with the options in `spec.options()` (its defaults
  /// when absent). `where` names the config field for messages (e.g. "data.train").
  /// Throws ConfigError for an unknown type (listing the registered ones and the closest name)
  /// or for options of the wrong message type. A ConfigError thrown by the plugin's factory
  /// (naming one of its option fields) is re-thrown prefixed with "<where>.options.".
  std::unique_ptr<Interface> create(const PluginSpec& spec, const PluginContext& context,
                                    const std::string& where) const;

 private:
  struct Slot {
    PluginEntry entry;
    Factory factory;
  };
  void add_now(PluginEntry entry, Factory factory);
  const Slot& slot_for(const PluginSpec& spec, const std::string& where) const;
  std::vector<Slot> slots_;
};

template <>
const char* Registry<Dataset>::family();
template <>
const char* Registry<Model>::family();
template <>
const char* Registry<NoiseScheduler>::family();
template <>
const char* Registry<LrSchedule>::family();
template <>
const char* Registry<Callback>::family();

extern template class Registry<Dataset>;
extern template class Registry<Model>;
extern template class Registry<NoiseScheduler>;
extern template class Registry<LrSchedule>;
extern template class Registry<Callback>;

/// Registers a factory taking the concrete options type `Options` at static-initialisation time.
template <class Interface, class Options>
class Registrar {
 public:
  using TypedFactory = std::function<std::unique_ptr<Interface>(const Options&, const PluginContext&)>;
  Registrar(const char* name, const char* description, TypedFactory factory) {
    PluginEntry entry;
    entry.name = name;
    entry.description = description;
    entry.options_type = Options::descriptor();
    Registry<Interface>::instance().add(
        std::move(entry), [factory = std::move(factory)](const google::protobuf::Message& options,
                                                         const PluginContext& context) {
          return factory(static_cast<const Options&>(options), context);
        });
  }
};

}  // namespace sdtrain

#define SDTRAIN_INTERNAL_CONCAT2(a, b) a##b
#define SDTRAIN_INTERNAL_CONCAT(a, b) SDTRAIN_INTERNAL_CONCAT2(a, b)

/// SDTRAIN_REGISTER_PLUGIN(Interface, "name", OptionsMessage, "one-line description", factory)
/// where factory is callable as std::unique_ptr<Interface>(const OptionsMessage&, const PluginContext&).
#define SDTRAIN_REGISTER_PLUGIN(Interface, name, Options, description, factory)         \
  static const ::sdtrain::Registrar<Interface, Options> SDTRAIN_INTERNAL_CONCAT(         \
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
