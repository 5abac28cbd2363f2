#include "plugins/builtin_plugins.h"

#include "framework/plugin/callback.h"
#include "framework/plugin/dataset.h"
#include "framework/plugin/model.h"
#include "framework/plugin/scheduler.h"
#include "framework/registry/registry.h"

namespace sdtrain {
namespace {
template <class Interface>
int count_builtin() {
  int count = 0;
  for (const auto& entry : Registry<Interface>::instance().entries()) count += entry.library.empty();
  return count;
}
}  // namespace

int builtin_plugin_count() {
  return count_builtin<Model>() + count_builtin<Dataset>() + count_builtin<NoiseScheduler>() +
         count_builtin<LrSchedule>() + count_builtin<Callback>();
}

}  // namespace sdtrain
