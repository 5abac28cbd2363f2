#pragma once
/// Typed factories by name, one registry per plugin family: what the framework looks plugins up
/// and builds them with.
///
/// Plugins add themselves with the SDTRAIN_REGISTER_* macros of sdtrain/plugin.h (built-in
/// plugins live in libsdtrain_plugins; external ones are dlopen'ed, see plugin_loader.h). The
/// registry's storage lives in libsdtrain, so every library sees one map.
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "proto/sdtrain.pb.h"
#include "sdtrain/plugin.h"

namespace sdtrain {

/// Registry of one plugin family. Thread-compatible: registration happens while libraries load,
/// before any concurrent use.
template <class Interface>
class Registry {
 public:
  using Factory = PluginFactory<Interface>;

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

}  // namespace sdtrain
