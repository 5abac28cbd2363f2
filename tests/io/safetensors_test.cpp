// safetensors files written by the reference package are read exactly; files sdtrain writes are
// read back identically by the reference package.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "framework/io/safetensors.h"
#include "sdtrain/errors.h"
#include "tests/io/io_test_util.h"

namespace sdtrain {
namespace {

using testing::fixture;
using testing::ScratchDir;

TEST(Safetensors, ReadsEveryDtypeWrittenByTheReference) {
  SafetensorsReader reader(fixture("all_dtypes.safetensors"));
  const auto expected = nlohmann::json::parse(testing::read_bytes(fixture("all_dtypes.json")));
  ASSERT_EQ(reader.size(), expected.size());
  const std::map<std::string, torch::Dtype> dtypes = {
      {"f64", torch::kFloat64}, {"f32", torch::kFloat32}, {"f16", torch::kFloat16}, {"bf16", torch::kBFloat16},
      {"i64", torch::kInt64},   {"i32", torch::kInt32},   {"i16", torch::kInt16},   {"i8", torch::kInt8},
      {"u8", torch::kUInt8},    {"bool", torch::kBool},   {"u16", torch::kUInt16},  {"u32", torch::kUInt32},
      {"u64", torch::kUInt64},  {"f8_e4m3", torch::kFloat8_e4m3fn}, {"f8_e5m2", torch::kFloat8_e5m2},
      {"empty", torch::kFloat32}, {"scalar", torch::kFloat32}};
  for (const auto& [name, want] : expected.items()) {
    SCOPED_TRACE(name);
    torch::Tensor t = reader.tensor(name);
    EXPECT_EQ(t.scalar_type(), dtypes.at(name));
    EXPECT_EQ(t.sizes().vec(), want["shape"].get<std::vector<int64_t>>());
    const auto values = want["values"].get<std::vector<double>>();
    ASSERT_EQ(t.numel(), static_cast<int64_t>(values.size()));
    torch::Tensor as_double = t.numel() ? t.to(torch::kFloat64).flatten() : torch::empty({0}, torch::kFloat64);
    for (size_t i = 0; i < values.size(); ++i) EXPECT_EQ(as_double[i].item<double>(), values[i]) << "element " << i;
  }
  EXPECT_EQ(reader.metadata().at("format"), "pt");
  EXPECT_EQ(reader.metadata().at("note"), "h\xc3\xa9llo \xe2\x9c\x93");
  EXPECT_EQ(reader.tensor("scalar").dim(), 0);
  EXPECT_EQ(reader.entry("f32").dtype, "F32");
  EXPECT_FORMAT_ERROR(reader.tensor("f33"), "no tensor 'f33'", "did you mean 'f32'");
}

TEST(Safetensors, TensorsViewTheMappingAndOutliveTheReader) {
  torch::Tensor t;
  {
    SafetensorsReader reader(fixture("all_dtypes.safetensors"));
    t = reader.tensor("f32");
  }
  // The reader is gone; the tensor still holds the mapping. Writing touches a private page only.
  const torch::Tensor before = t.clone();
  t.add_(1.0);
  EXPECT_TRUE(torch::allclose(t, before + 1.0));
  SafetensorsReader again(fixture("all_dtypes.safetensors"));
  EXPECT_TRUE(torch::equal(again.tensor("f32"), before)) << "the file must never change";
}

TEST(Safetensors, ElementsAreARangeOfTheFlattenedTensor) {
  SafetensorsReader reader(fixture("all_dtypes.safetensors"));
  for (const char* name : {"f32", "bf16", "i64", "u8"}) {
    SCOPED_TRACE(name);
    const torch::Tensor whole = reader.tensor(name).flatten();
    ASSERT_GE(whole.numel(), 3);
    const torch::Tensor middle = reader.elements(name, 1, whole.numel() - 2);
    EXPECT_EQ(middle.dim(), 1);
    EXPECT_EQ(middle.scalar_type(), whole.scalar_type());
    EXPECT_TRUE(torch::equal(middle, whole.narrow(0, 1, whole.numel() - 2)));
    EXPECT_EQ(reader.elements(name, whole.numel(), 0).numel(), 0);
    EXPECT_FORMAT_ERROR(reader.elements(name, 1, whole.numel()), "all_dtypes.safetensors",
                        "tensor '" + std::string(name) + "' has " + std::to_string(whole.numel()) + " elements");
    EXPECT_FORMAT_ERROR(reader.elements(name, -1, 1), "elements [-1, 0) were asked for");
  }
  EXPECT_FORMAT_ERROR(reader.elements("f33", 0, 1), "no tensor 'f33'");
}

TEST(Safetensors, ReadsAnEmptyFile) {
  SafetensorsReader reader(fixture("no_tensors.safetensors"));
  EXPECT_EQ(reader.size(), 0u);
}

TEST(Safetensors, RoundTripIsReadIdenticallyByTheReference) {
  ScratchDir dir;
  SafetensorsReader reader(fixture("all_dtypes.safetensors"));
  save_safetensors(dir.file("copy.safetensors"), reader.tensors(), reader.metadata());
  std::string log;
  EXPECT_EQ(testing::run_python_check("--compare-safetensors '" + dir.file("copy.safetensors") + "' '" +
                                          fixture("all_dtypes.safetensors") + "'", log), 0) << log;
  // And by ourselves.
  SafetensorsReader back(dir.file("copy.safetensors"));
  ASSERT_EQ(back.names(), reader.names());
  for (const auto& name : reader.names()) {
    EXPECT_EQ(back.tensor(name).scalar_type(), reader.tensor(name).scalar_type());
    EXPECT_TRUE(torch::equal(back.tensor(name).reshape(-1).view(torch::kUInt8), reader.tensor(name).reshape(-1).view(torch::kUInt8)) ||
                back.tensor(name).numel() == 0) << name;
  }
}

TEST(Safetensors, WritesTheReferenceBytesExactly) {
  // Same tensors, order and metadata as the reference writer gives the same file, byte for byte.
  ScratchDir dir;
  SafetensorsReader reader(fixture("one_meta.safetensors"));
  save_safetensors(dir.file("same.safetensors"), reader.tensors(), reader.metadata());
  EXPECT_EQ(testing::read_bytes(dir.file("same.safetensors")), testing::read_bytes(fixture("one_meta.safetensors")));
}

TEST(Safetensors, WriterHandlesViewsAndPadsHeaderWithSpaces) {
  ScratchDir dir;
  torch::Tensor base = torch::arange(12, torch::kFloat32).reshape({3, 4});
  save_safetensors(dir.file("v.safetensors"), {{"t", base.t()}, {"row", base[1]}, {"b", torch::tensor({true})}});
  const std::string bytes = testing::read_bytes(dir.file("v.safetensors"));
  uint64_t n = 0;
  std::memcpy(&n, bytes.data(), 8);
  EXPECT_EQ(n % 8, 0u);
  EXPECT_EQ(bytes[8 + n - 1] == ' ' || bytes[8 + n - 1] == '}', true);
  SafetensorsReader back(dir.file("v.safetensors"));
  EXPECT_TRUE(torch::equal(back.tensor("t"), base.t()));
  EXPECT_TRUE(torch::equal(back.tensor("row"), base[1]));
  EXPECT_EQ(back.names(), (std::vector<std::string>{"t", "row", "b"}));
}

TEST(Safetensors, WriterRefusesBadInputAndNeverLeavesPartialFiles) {
  ScratchDir dir;
  const std::string path = dir.file("x.safetensors");
  EXPECT_FORMAT_ERROR(save_safetensors(path, {{"a", torch::ones(1)}, {"a", torch::ones(1)}}), "duplicate name", "'a'");
  EXPECT_FORMAT_ERROR(save_safetensors(path, {{"__metadata__", torch::ones(1)}}), "reserved");
  EXPECT_FORMAT_ERROR(save_safetensors(path, {{"c", torch::ones(1, torch::kComplexDouble)}}), "cannot be stored");
  EXPECT_FALSE(std::filesystem::exists(path));
  save_safetensors(path, {{"a", torch::ones(2)}});
  EXPECT_FORMAT_ERROR(save_safetensors(path, {{"a", torch::zeros(2)}}, {}, /*overwrite=*/false), "already exists");
  EXPECT_TRUE(torch::equal(SafetensorsReader(path).tensor("a"), torch::ones(2)));
  save_safetensors(path, {{"a", torch::zeros(3)}});  // overwrite (the default) replaces atomically
  EXPECT_TRUE(torch::equal(SafetensorsReader(path).tensor("a"), torch::zeros(3)));
  size_t files = 0;
  for (const auto& e : std::filesystem::directory_iterator(dir.path())) files += e.is_regular_file();
  EXPECT_EQ(files, 1u) << "no temporary files may remain";
}

}  // namespace
}  // namespace sdtrain
