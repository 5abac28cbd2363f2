#include "framework/registry/registry.h"

#include <algorithm>
#include <memory>

#include <google/protobuf/any.pb.h>

#include "framework/registry/registration_scope.h"
#include "framework/util/strings.h"
#include "sdtrain/callback.h"
#include "sdtrain/dataset.h"
#include "sdtrain/errors.h"
#include "sdtrain/lr_schedule.h"
#include "sdtrain/model.h"
#include "sdtrain/noise_scheduler.h"

namespace sdtrain {
namespace {
RegistrationScope* g_current_scope = nullptr;

std::string type_name_of_any(const google::protobuf::Any& any) {
  const std::string& url = any.type_url();
  const auto slash = url.rfind('/');
  return slash == std::string::npos ? url : url.substr(slash + 1);
}
}  // namespace

RegistrationScope::RegistrationScope(std::string library) : library_(std::move(library)) {
  g_current_scope = this;
}

RegistrationScope::~RegistrationScope() {
  if (g_current_scope == this) g_current_scope = nullptr;
}

RegistrationScope* RegistrationScope::current() { return g_current_scope; }

std::size_t RegistrationScope::commit() {
  g_current_scope = nullptr;
  auto pending = std::move(pending_);
  pending_.clear();
  for (auto& registration : pending) registration();
  return pending.size();
}

template <>
const char* Registry<Dataset>::family() { return "dataset"; }
template <>
const char* Registry<Model>::family() { return "model"; }
template <>
const char* Registry<NoiseScheduler>::family() { return "scheduler"; }
template <>
const char* Registry<LrSchedule>::family() { return "lr_schedule"; }
template <>
const char* Registry<Callback>::family() { return "callback"; }

template <class Interface>
Registry<Interface>& Registry<Interface>::instance() {
  static Registry registry;  // function-local: safe from static-initialisation order
  return registry;
}

template <class Interface>
void Registry<Interface>::add(PluginEntry entry, Factory factory) {
  if (RegistrationScope* scope = RegistrationScope::current()) {
    entry.library = scope->library();
    scope->defer([this, entry = std::move(entry), factory = std::move(factory)]() mutable {
      add_now(std::move(entry), std::move(factory));
    });
    return;
  }
  add_now(std::move(entry), std::move(factory));
}

template <class Interface>
void Registry<Interface>::add_now(PluginEntry entry, Factory factory) {
  if (const PluginEntry* existing = find(entry.name)) {
    throw PluginError(std::string(family()) + " plugin '" + entry.name + "' is registered twice (" +
                      (existing->library.empty() ? "built in" : existing->library) + " and " +
                      (entry.library.empty() ? "built in" : entry.library) + ")");
  }
  slots_.push_back(Slot{std::move(entry), std::move(factory)});
}

template <class Interface>
const PluginEntry* Registry<Interface>::find(const std::string& name) const {
  for (const auto& slot : slots_) {
    if (slot.entry.name == name) return &slot.entry;
  }
  return nullptr;
}

template <class Interface>
std::vector<PluginEntry> Registry<Interface>::entries() const {
  std::vector<PluginEntry> out;
  for (const auto& slot : slots_) out.push_back(slot.entry);
  std::sort(out.begin(), out.end(),
            [](const PluginEntry& a, const PluginEntry& b) { return a.name < b.name; });
  return out;
}

template <class Interface>
const typename Registry<Interface>::Slot& Registry<Interface>::slot_for(const PluginSpec& spec,
                                                                       const std::string& where) const {
  for (const auto& candidate : slots_) {
    if (candidate.entry.name == spec.type()) {
      const std::string expected = candidate.entry.options_type->full_name();
      if (spec.has_options() && type_name_of_any(spec.options()) != expected) {
        throw ConfigError(where + ".options: " + family() + " type '" + spec.type() + "' takes " +
                          expected + ", got " + type_name_of_any(spec.options()));
      }
      return candidate;
    }
  }
  std::vector<std::string> names;
  for (const auto& entry : entries()) names.push_back(entry.name);
  std::string message = spec.type().empty()
                            ? where + ".type: missing (the name of a " + family() + " plugin)."
                            : where + ".type: unknown " + family() + " type '" + spec.type() + "'";
  const std::string suggestion = closest_match(spec.type(), names);
  if (!suggestion.empty()) message += "; did you mean " + suggestion + "?";
  message += std::string(" Registered ") + family() + " types: " +
             (names.empty() ? std::string("(none)") : join(names));
  throw ConfigError(message);
}

template <class Interface>
void Registry<Interface>::check(const PluginSpec& spec, const std::string& where) const {
  slot_for(spec, where);
}

template <class Interface>
std::unique_ptr<Interface> Registry<Interface>::create(const PluginSpec& spec,
                                                       const PluginContext& context,
                                                       const std::string& where) const {
  const Slot& slot = slot_for(spec, where);
  const google::protobuf::Descriptor* type = slot.entry.options_type;
  std::unique_ptr<google::protobuf::Message> options(
      google::protobuf::MessageFactory::generated_factory()->GetPrototype(type)->New());
  if (spec.has_options() && !spec.options().UnpackTo(options.get())) {
    throw ConfigError(where + ".options: could not decode " + type->full_name());
  }
  try {
    return slot.factory(*options, context);
  } catch (const ConfigError& error) {
    throw ConfigError(where + ".options." + error.what());
  }
}

template class Registry<Dataset>;
template class Registry<Model>;
template class Registry<NoiseScheduler>;
template class Registry<LrSchedule>;
template class Registry<Callback>;

template <class Interface>
void register_plugin(PluginEntry entry, PluginFactory<Interface> factory) {
  Registry<Interface>::instance().add(std::move(entry), std::move(factory));
}

template void register_plugin<Dataset>(PluginEntry, PluginFactory<Dataset>);
template void register_plugin<Model>(PluginEntry, PluginFactory<Model>);
template void register_plugin<NoiseScheduler>(PluginEntry, PluginFactory<NoiseScheduler>);
template void register_plugin<LrSchedule>(PluginEntry, PluginFactory<LrSchedule>);
template void register_plugin<Callback>(PluginEntry, PluginFactory<Callback>);

}  // namespace sdtrain
