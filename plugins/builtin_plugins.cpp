#include "plugins/builtin_plugins.h"

namespace sdtrain {

void anchor_builtin_plugins() {}

}  // namespace sdtrain
