#pragma once
/// Holds back the registrations a plugin library makes while it is dlopen'ed, so nothing from a
/// library that then fails its version check becomes visible. Internal to the registry/loader.
#include <functional>
#include <string>
#include <vector>

namespace sdtrain {

class RegistrationScope {
 public:
  /// Becomes the current scope (scopes do not nest: loading happens on one thread, one at a time).
  explicit RegistrationScope(std::string library);
  /// Drops whatever was not committed.
  ~RegistrationScope();
  RegistrationScope(const RegistrationScope&) = delete;
  RegistrationScope& operator=(const RegistrationScope&) = delete;

  /// The scope of the library being loaded now, or nullptr.
  static RegistrationScope* current();

  const std::string& library() const { return library_; }
  void defer(std::function<void()> registration) { pending_.push_back(std::move(registration)); }
  /// Performs the held-back registrations; returns how many there were.
  std::size_t commit();

 private:
  std::string library_;
  std::vector<std::function<void()>> pending_;
};

}  // namespace sdtrain
