// Every malformed safetensors file is refused with a FormatError naming the file, the tensor at
// fault and the defect, as the reference crate's validation does; none crashes the reader.
#include <gtest/gtest.h>

#include <random>

#include "framework/io/safetensors.h"
#include "sdtrain/errors.h"
#include "tests/io/io_test_util.h"

namespace sdtrain {
namespace {

using testing::ScratchDir;

std::string le64(uint64_t n) {
  std::string s(8, '\0');
  for (int i = 0; i < 8; ++i) s[i] = static_cast<char>((n >> (8 * i)) & 0xFF);
  return s;
}

// 8-byte length + header + data.
std::string file_bytes(const std::string& header, const std::string& data) { return le64(header.size()) + header + data; }

class Malformed : public ::testing::Test {
 protected:
  std::string write(const std::string& bytes) {
    const std::string path = dir_.file("bad" + std::to_string(count_++) + ".safetensors");
    testing::write_bytes(path, bytes);
    return path;
  }
  ScratchDir dir_;
  int count_ = 0;
};

TEST_F(Malformed, TruncatedBelowTheLengthField) {
  const auto p = write("\x10\x00\x00");
  EXPECT_FORMAT_ERROR(SafetensorsReader{p}, p, "too small");
}

TEST_F(Malformed, HeaderLengthPastEndOfFile) {
  const auto p = write(le64(1000) + "{}");
  EXPECT_FORMAT_ERROR(SafetensorsReader{p}, p, "header length 1000 runs past the end of the file");
}

TEST_F(Malformed, HeaderLengthHuge) {
  const auto p = write(le64(uint64_t{1} << 40) + "{}");
  EXPECT_FORMAT_ERROR(SafetensorsReader{p}, p, "exceeds the limit of 100000000");
  const auto q = write(le64(~uint64_t{0}) + "{}");
  EXPECT_FORMAT_ERROR(SafetensorsReader{q}, q, "exceeds the limit");
}

TEST_F(Malformed, TruncatedData) {
  const auto p = write(file_bytes(R"({"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}})", std::string(8, '\0')));
  EXPECT_FORMAT_ERROR(SafetensorsReader{p}, p, "tensor 'a'", "past the data section (8 bytes)");
}

TEST_F(Malformed, OverlappingRanges) {
  const auto p = write(file_bytes(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                                  R"("b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})", std::string(12, '\0')));
  EXPECT_FORMAT_ERROR(SafetensorsReader{p}, p, "tensor 'b'", "overlaps the previous tensor");
}

TEST_F(Malformed, GapBetweenRanges) {
  const auto p = write(file_bytes(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},)"
                                  R"("b":{"dtype":"F32","shape":[1],"data_offsets":[8,12]}})", std::string(12, '\0')));
  EXPECT_FORMAT_ERROR(SafetensorsReader{p}, p, "tensor 'b'", "leaves a gap after offset 4");
}

TEST_F(Malformed, RangeDisagreesWithDtypeSize) {
  const auto p = write(file_bytes(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,4]}})", std::string(4, '\0')));
  EXPECT_FORMAT_ERROR(SafetensorsReader{p}, p, "tensor 'a'", "needs 8 bytes", "hold 4");
}

TEST_F(Malformed, ShapeOverflow) {
  const auto p = write(file_bytes(R"({"a":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,0]}})", ""));
  EXPECT_FORMAT_ERROR(SafetensorsReader{p}, p, "tensor 'a'", "overflows");
  // Elements fit in 64 bits, bytes do not.
  const auto q = write(file_bytes(R"({"a":{"dtype":"F64","shape":[4611686018427387904],"data_offsets":[0,0]}})", ""));
  EXPECT_FORMAT_ERROR(SafetensorsReader{q}, q, "tensor 'a'", "size overflows");
}

TEST_F(Malformed, NotUtf8) {
  const auto p = write(file_bytes("{\"a\xff\":{\"dtype\":\"F32\",\"shape\":[],\"data_offsets\":[0,4]}}", std::string(4, '\0')));
  EXPECT_FORMAT_ERROR(SafetensorsReader{p}, p, "not valid UTF-8 (byte 3)");
  const auto q = write(file_bytes("{\"\xc0\xaf\":1}", ""));  // overlong encoding
  EXPECT_FORMAT_ERROR(SafetensorsReader{q}, q, "not valid UTF-8");
}

TEST_F(Malformed, MalformedJson) {
  const auto p = write(file_bytes(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]})", std::string(4, '\0')));
  EXPECT_FORMAT_ERROR(SafetensorsReader{p}, p, "malformed JSON");
  const auto q = write(file_bytes("[1,2]", ""));
  EXPECT_FORMAT_ERROR(SafetensorsReader{q}, q, "does not start with '{'");
  const auto r = write(file_bytes(R"({"a":[[[[[[1]]]]]]})", ""));
  EXPECT_FORMAT_ERROR(SafetensorsReader{r}, r, "nested deeper");
}

TEST_F(Malformed, UnknownAndUnsupportedDtypes) {
  const auto p = write(file_bytes(R"({"a":{"dtype":"F7","shape":[1],"data_offsets":[0,4]}})", std::string(4, '\0')));
  EXPECT_FORMAT_ERROR(SafetensorsReader{p}, p, "tensor 'a'", "unknown dtype 'F7'");
  const auto q = write(file_bytes(R"({"a":{"dtype":"F4","shape":[2],"data_offsets":[0,1]}})", std::string(1, '\0')));
  EXPECT_FORMAT_ERROR(SafetensorsReader{q}, q, "tensor 'a'", "unsupported dtype 'F4'");
}

TEST_F(Malformed, OffsetsPastEnd) {
  const auto p = write(file_bytes(R"({"a":{"dtype":"U8","shape":[4],"data_offsets":[0,4]},)"
                                  R"("b":{"dtype":"U8","shape":[4],"data_offsets":[4,8]}})", std::string(6, '\0')));
  EXPECT_FORMAT_ERROR(SafetensorsReader{p}, p, "tensor 'b'", "past the data section (6 bytes)");
  const auto q = write(file_bytes(R"({"a":{"dtype":"U8","shape":[0],"data_offsets":[5,0]}})", ""));
  EXPECT_FORMAT_ERROR(SafetensorsReader{q}, q, "tensor 'a'", "end before they begin");
}

TEST_F(Malformed, DuplicateKey) {
  const auto p = write(file_bytes(R"({"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},)"
                                  R"("a":{"dtype":"U8","shape":[1],"data_offsets":[1,2]}})", std::string(2, '\0')));
  EXPECT_FORMAT_ERROR(SafetensorsReader{p}, p, "duplicate key 'a'");
  const auto q = write(file_bytes(R"({"a":{"dtype":"U8","dtype":"I8","shape":[1],"data_offsets":[0,1]}})", std::string(1, '\0')));
  EXPECT_FORMAT_ERROR(SafetensorsReader{q}, q, "duplicate key 'dtype'");
}

TEST_F(Malformed, MetadataMustMapStringsToStrings) {
  const auto p = write(file_bytes(R"({"__metadata__":{"format":"pt","epoch":3}})", ""));
  EXPECT_FORMAT_ERROR(SafetensorsReader{p}, p, "\"__metadata__\" value for 'epoch'", "expected a string");
  const auto q = write(file_bytes(R"({"__metadata__":["pt"]})", ""));
  EXPECT_FORMAT_ERROR(SafetensorsReader{q}, q, "\"__metadata__\" is not an object");
}

TEST_F(Malformed, EntryFieldsMissingOrMistyped) {
  const auto p = write(file_bytes(R"({"a":{"dtype":"U8","shape":[1]}})", ""));
  EXPECT_FORMAT_ERROR(SafetensorsReader{p}, p, "tensor 'a'", "missing \"data_offsets\"");
  const auto q = write(file_bytes(R"({"a":{"dtype":"U8","shape":[-1],"data_offsets":[0,0]}})", ""));
  EXPECT_FORMAT_ERROR(SafetensorsReader{q}, q, "tensor 'a'", "shape entry -1 is not a non-negative integer");
  const auto r = write(file_bytes(R"({"a":{"dtype":"U8","shape":[1.5],"data_offsets":[0,1]}})", std::string(1, 'x')));
  EXPECT_FORMAT_ERROR(SafetensorsReader{r}, r, "tensor 'a'", "not a non-negative integer");
  const auto s = write(file_bytes(R"({"a":{"dtype":"U8","shape":[1],"data_offsets":[0]}})", std::string(1, 'x')));
  EXPECT_FORMAT_ERROR(SafetensorsReader{s}, s, "tensor 'a'", "not a pair");
  const auto t = write(file_bytes(R"({"a":7})", ""));
  EXPECT_FORMAT_ERROR(SafetensorsReader{t}, t, "tensor 'a'", "not an object");
}

TEST_F(Malformed, TrailingBytesAfterTheLastTensor) {
  const auto p = write(file_bytes(R"({"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}})", "xy"));
  EXPECT_FORMAT_ERROR(SafetensorsReader{p}, p, "tensors cover 1 bytes but the data section holds 2");
}

TEST_F(Malformed, MissingFile) {
  EXPECT_FORMAT_ERROR(SafetensorsReader{dir_.file("absent.safetensors")}, "absent.safetensors", "cannot open");
}

TEST_F(Malformed, RandomCorruptionNeverCrashes) {
  // Flip bytes of a valid file: every outcome is a clean FormatError or a valid file.
  const std::string good = testing::read_bytes(testing::fixture("all_dtypes.safetensors"));
  std::mt19937 rng(7);
  int refused = 0;
  for (int i = 0; i < 300; ++i) {
    std::string bytes = good;
    const int flips = 1 + static_cast<int>(rng() % 4);
    for (int f = 0; f < flips; ++f) {
      // Mostly the header, where the structure lives.
      const size_t pos = (rng() % 4 == 0) ? rng() % bytes.size() : rng() % std::min<size_t>(bytes.size(), 700);
      bytes[pos] = static_cast<char>(rng() % 256);
    }
    if (rng() % 5 == 0) bytes.resize(rng() % bytes.size());
    const auto p = write(bytes);
    try {
      SafetensorsReader reader(p);
      for (const auto& name : reader.names()) (void)reader.tensor(name).clone();
    } catch (const FormatError&) {
      ++refused;
    }
    std::filesystem::remove(p);
  }
  EXPECT_GT(refused, 100);
}

}  // namespace
}  // namespace sdtrain
