#include "plugins/callbacks/tensorboard/crc32c.h"

#include <array>

namespace sdtrain {
namespace {

/// The byte-at-a-time lookup table of the reflected polynomial, built once.
const std::array<std::uint32_t, 256>& table() {
  static const std::array<std::uint32_t, 256> entries = [] {
    std::array<std::uint32_t, 256> result{};
    for (std::uint32_t byte = 0; byte < 256; ++byte) {
      std::uint32_t crc = byte;
      for (int bit = 0; bit < 8; ++bit) crc = (crc & 1) ? (crc >> 1) ^ 0x82F63B78u : crc >> 1;
      result[byte] = crc;
    }
    return result;
  }();
  return entries;
}

}  // namespace

std::uint32_t crc32c(const void* data, std::size_t size) {
  const auto& lookup = table();
  const auto* bytes = static_cast<const std::uint8_t*>(data);
  std::uint32_t crc = 0xFFFFFFFFu;
  for (std::size_t i = 0; i < size; ++i) crc = lookup[(crc ^ bytes[i]) & 0xFF] ^ (crc >> 8);
  return crc ^ 0xFFFFFFFFu;
}

std::uint32_t masked_crc32c(const void* data, std::size_t size) {
  const std::uint32_t crc = crc32c(data, size);
  return ((crc >> 15) | (crc << 17)) + 0xA282EAD8u;
}

}  // namespace sdtrain
