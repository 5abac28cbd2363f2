#include "framework/data/pixel_scaling.h"

namespace sdtrain {

// Compiled with -O3 (see CMakeLists.txt) so the loop is vectorised, and for AVX2 where the CPU
// has it. Vector division rounds as scalar division does, and * 2 is exact, so no contraction
// or vector width changes a value.
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
__attribute__((target_clones("avx2", "default")))
#endif
void bytes_to_signed_unit(const std::uint8_t* __restrict src, std::size_t count, float* __restrict dst) {
  for (std::size_t i = 0; i < count; ++i) dst[i] = static_cast<float>(src[i]) / 255.0f * 2.0f - 1.0f;
}

}  // namespace sdtrain
