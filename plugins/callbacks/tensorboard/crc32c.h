#pragma once
/// CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), the checksum of TFRecord framing, and
/// TensorFlow's "masked" form of it that TensorBoard's record reader verifies.
#include <cstddef>
#include <cstdint>

namespace sdtrain {

/// CRC-32C of `size` bytes at `data` (initial value and final xor 0xFFFFFFFF, as in RFC 3720).
/// crc32c("123456789") == 0xE3069283.
std::uint32_t crc32c(const void* data, std::size_t size);

/// TFRecord's masked CRC: ((crc >> 15) | (crc << 17)) + 0xA282EAD8, modulo 2^32. Masking keeps a
/// CRC of data that itself contains CRCs from being weak.
std::uint32_t masked_crc32c(const void* data, std::size_t size);

}  // namespace sdtrain
