// CRC-32C against the standard check values (RFC 3720 B.4, the "123456789" check) and the
// TFRecord mask formula; the end-to-end proof is TensorBoard's reader accepting the files.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "plugins/callbacks/tensorboard/crc32c.h"

namespace sdtrain {
namespace {

TEST(Crc32c, StandardCheckValues) {
  const std::string check = "123456789";
  EXPECT_EQ(crc32c(check.data(), check.size()), 0xE3069283u);
  EXPECT_EQ(crc32c(nullptr, 0), 0u);
  const std::vector<unsigned char> zeros(32, 0x00);
  EXPECT_EQ(crc32c(zeros.data(), zeros.size()), 0x8A9136AAu);  // RFC 3720 B.4
  const std::vector<unsigned char> ones(32, 0xFF);
  EXPECT_EQ(crc32c(ones.data(), ones.size()), 0x62A8AB43u);
}

TEST(Crc32c, MaskRotatesAndAddsTheConstant) {
  const std::string check = "123456789";
  const std::uint32_t crc = 0xE3069283u;
  EXPECT_EQ(masked_crc32c(check.data(), check.size()), ((crc >> 15) | (crc << 17)) + 0xA282EAD8u);
}

}  // namespace
}  // namespace sdtrain
