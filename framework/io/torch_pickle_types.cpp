#include "framework/io/torch_pickle_types.h"

#include <utility>

#include "sdtrain/errors.h"

namespace sdtrain {
namespace {

const std::pair<const char*, torch::Dtype> kStorageTypes[] = {
    {"torch.DoubleStorage", torch::kFloat64},     {"torch.FloatStorage", torch::kFloat32},
    {"torch.HalfStorage", torch::kFloat16},       {"torch.BFloat16Storage", torch::kBFloat16},
    {"torch.LongStorage", torch::kInt64},         {"torch.IntStorage", torch::kInt32},
    {"torch.ShortStorage", torch::kInt16},        {"torch.CharStorage", torch::kInt8},
    {"torch.ByteStorage", torch::kUInt8},         {"torch.BoolStorage", torch::kBool},
    {"torch.ComplexFloatStorage", torch::kComplexFloat}, {"torch.ComplexDoubleStorage", torch::kComplexDouble},
};

const std::pair<const char*, torch::Dtype> kDtypeNames[] = {
    {"torch.float32", torch::kFloat32},   {"torch.float", torch::kFloat32},
    {"torch.float64", torch::kFloat64},   {"torch.double", torch::kFloat64},
    {"torch.float16", torch::kFloat16},   {"torch.half", torch::kFloat16},
    {"torch.bfloat16", torch::kBFloat16}, {"torch.int64", torch::kInt64},
    {"torch.long", torch::kInt64},        {"torch.int32", torch::kInt32},
    {"torch.int", torch::kInt32},         {"torch.int16", torch::kInt16},
    {"torch.short", torch::kInt16},       {"torch.int8", torch::kInt8},
    {"torch.uint8", torch::kUInt8},       {"torch.bool", torch::kBool},
    {"torch.uint16", torch::kUInt16},     {"torch.uint32", torch::kUInt32},
    {"torch.uint64", torch::kUInt64},     {"torch.complex64", torch::kComplexFloat},
    {"torch.cfloat", torch::kComplexFloat}, {"torch.complex128", torch::kComplexDouble},
    {"torch.cdouble", torch::kComplexDouble}, {"torch.float8_e4m3fn", torch::kFloat8_e4m3fn},
    {"torch.float8_e5m2", torch::kFloat8_e5m2},
};

}  // namespace

std::optional<torch::Dtype> storage_type_dtype(const std::string& qualified_name) {
  if (qualified_name == "torch.UntypedStorage") return torch::kUInt8;
  for (const auto& [name, dtype] : kStorageTypes) {
    if (qualified_name == name) return dtype;
  }
  return std::nullopt;
}

std::string dtype_storage_type(torch::Dtype dtype, const std::string& context) {
  for (const auto& [name, d] : kStorageTypes) {
    if (d == dtype) return name;
  }
  throw FormatError(context + ": dtype " + std::string(c10::toString(dtype)) + " has no torch storage type");
}

std::optional<torch::Dtype> dtype_from_global(const std::string& qualified_name) {
  for (const auto& [name, dtype] : kDtypeNames) {
    if (qualified_name == name) return dtype;
  }
  return std::nullopt;
}

}  // namespace sdtrain
