#pragma once
/// The safetensors header: dtype names and the validation the reference Rust crate performs.
/// Format: an 8-byte little-endian header length N, N bytes of UTF-8 JSON
/// {"__metadata__": {str: str}, "<name>": {"dtype": "F32", "shape": [..], "data_offsets": [b, e]}}
/// padded with spaces, then the data section; offsets are relative to the data section.
#include <torch/torch.h>

#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace sdtrain {

/// The largest header the reference crate accepts (100 MB).
constexpr std::uint64_t kSafetensorsMaxHeaderSize = 100'000'000;

/// One tensor's header entry.
struct SafetensorsEntry {
  std::string name;
  std::string dtype;                ///< the safetensors name, e.g. "BF16"
  torch::Dtype scalar_type;         ///< the matching torch dtype
  std::vector<std::int64_t> shape;  ///< empty for a scalar
  std::uint64_t begin = 0;          ///< byte offset of the first byte, relative to the data section
  std::uint64_t end = 0;            ///< one past the last byte
};

/// A validated header.
struct SafetensorsHeader {
  std::vector<SafetensorsEntry> entries;        ///< sorted by data offset (the physical order)
  std::map<std::string, std::string> metadata;  ///< the "__metadata__" map (empty if absent)
  std::uint64_t data_start = 0;                 ///< file offset of the data section (8 + N)
  std::uint64_t data_size = 0;                  ///< bytes in the data section
};

/// Torch dtype for a safetensors dtype name. Supported: F64 F32 F16 BF16 I64 I32 I16 I8 U64 U32
/// U16 U8 BOOL F8_E4M3 F8_E5M2 C64. Throws FormatError "unknown dtype" for names outside the
/// safetensors spec and "unsupported dtype" for spec dtypes torch cannot hold (F4, F6_*, F8_E8M0).
/// `context` prefixes the message (file and tensor).
torch::Dtype safetensors_dtype_to_torch(const std::string& name, const std::string& context);

/// Safetensors name for a torch dtype; throws FormatError for dtypes safetensors cannot store.
std::string torch_dtype_to_safetensors(torch::Dtype dtype, const std::string& context);

/// Parses and validates the header of a file of `file_size` bytes starting at `bytes`, as the
/// reference crate does: length bounded and inside the file, UTF-8, JSON starting with '{',
/// no duplicate keys, every tensor with a known dtype, non-negative shape and two offsets,
/// shape product x dtype size equal to its byte range (with overflow checks), ranges sorted,
/// contiguous and non-overlapping from 0 to the end of the file, "__metadata__" a map of strings.
/// Throws FormatError naming `path` and the tensor at fault.
SafetensorsHeader parse_safetensors_header(const std::uint8_t* bytes, std::uint64_t file_size,
                                           const std::string& path);

/// Serializes a header as the reference writer does: compact JSON ("__metadata__" first when
/// non-empty, then entries in the given order) padded with spaces to a multiple of 8 bytes,
/// preceded by its 8-byte little-endian length. Returns the bytes before the data section.
std::string serialize_safetensors_header(const std::vector<SafetensorsEntry>& entries,
                                         const std::map<std::string, std::string>& metadata);

}  // namespace sdtrain
