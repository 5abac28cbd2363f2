#include "framework/io/safetensors_format.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <set>

#include "framework/util/utf8.h"
#include "sdtrain/errors.h"

namespace sdtrain {
namespace {

struct DtypeInfo {
  const char* name;
  torch::Dtype dtype;
  bool supported;
};

const DtypeInfo kDtypes[] = {
    {"F64", torch::kFloat64, true},       {"F32", torch::kFloat32, true},
    {"F16", torch::kFloat16, true},       {"BF16", torch::kBFloat16, true},
    {"I64", torch::kInt64, true},         {"I32", torch::kInt32, true},
    {"I16", torch::kInt16, true},         {"I8", torch::kInt8, true},
    {"U64", torch::kUInt64, true},        {"U32", torch::kUInt32, true},
    {"U16", torch::kUInt16, true},        {"U8", torch::kUInt8, true},
    {"BOOL", torch::kBool, true},         {"F8_E4M3", torch::kFloat8_e4m3fn, true},
    {"F8_E5M2", torch::kFloat8_e5m2, true}, {"C64", torch::kComplexFloat, true},
    // In the safetensors spec, but sub-byte or without a torch dtype here.
    {"F8_E8M0", torch::kByte, false},     {"F4", torch::kByte, false},
    {"F6_E2M3", torch::kByte, false},     {"F6_E3M2", torch::kByte, false},
};

using Json = nlohmann::ordered_json;

[[noreturn]] void header_error(const std::string& path, const std::string& what) {
  throw FormatError(path + ": safetensors header: " + what);
}

[[noreturn]] void tensor_error(const std::string& path, const std::string& name, const std::string& what) {
  throw FormatError(path + ": safetensors tensor '" + name + "': " + what);
}

std::uint64_t dtype_size(torch::Dtype dtype) { return static_cast<std::uint64_t>(c10::elementSize(dtype)); }

}  // namespace

torch::Dtype safetensors_dtype_to_torch(const std::string& name, const std::string& context) {
  for (const auto& d : kDtypes) {
    if (name == d.name) {
      if (!d.supported) throw FormatError(context + ": unsupported dtype '" + name + "' (no torch dtype for it in sdtrain)");
      return d.dtype;
    }
  }
  throw FormatError(context + ": unknown dtype '" + name + "'");
}

std::string torch_dtype_to_safetensors(torch::Dtype dtype, const std::string& context) {
  for (const auto& d : kDtypes) {
    if (d.supported && d.dtype == dtype) return d.name;
  }
  throw FormatError(context + ": dtype " + std::string(c10::toString(dtype)) + " cannot be stored in safetensors");
}

SafetensorsHeader parse_safetensors_header(const std::uint8_t* bytes, std::uint64_t file_size,
                                           const std::string& path) {
  if (file_size < 8) {
    header_error(path, "file is " + std::to_string(file_size) + " bytes, too small for the 8-byte header length");
  }
  std::uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | bytes[i];
  if (n > kSafetensorsMaxHeaderSize) {
    header_error(path, "header length " + std::to_string(n) + " exceeds the limit of " +
                           std::to_string(kSafetensorsMaxHeaderSize) + " bytes");
  }
  if (n > file_size - 8) {
    header_error(path, "header length " + std::to_string(n) + " runs past the end of the file (" +
                           std::to_string(file_size) + " bytes)");
  }
  const std::uint8_t* text = bytes + 8;
  const std::size_t bad = find_invalid_utf8(std::string_view(reinterpret_cast<const char*>(text), n));
  if (bad != std::string_view::npos) {
    header_error(path, "header is not valid UTF-8 (byte " + std::to_string(bad) + ")");
  }
  if (n == 0 || text[0] != '{') header_error(path, "header does not start with '{'");

  // Reject duplicate keys (JSON parsers keep the last silently) and nesting deeper than the
  // format needs (a hostile header must not exhaust the stack).
  std::vector<std::set<std::string>> keys;
  Json::parser_callback_t on_event = [&](int, Json::parse_event_t event, Json& parsed) {
    switch (event) {
      case Json::parse_event_t::object_start:
      case Json::parse_event_t::array_start:
        if (keys.size() >= 3) header_error(path, "JSON nested deeper than the format allows");
        keys.emplace_back();
        break;
      case Json::parse_event_t::object_end:
      case Json::parse_event_t::array_end:
        keys.pop_back();
        break;
      case Json::parse_event_t::key: {
        const std::string key = parsed.get<std::string>();
        if (!keys.back().insert(key).second) header_error(path, "duplicate key '" + key + "'");
        break;
      }
      default:
        break;
    }
    return true;
  };
  Json json;
  try {
    json = Json::parse(text, text + n, on_event);
  } catch (const Json::exception& e) {
    header_error(path, std::string("malformed JSON: ") + e.what());
  }
  if (!json.is_object()) header_error(path, "JSON is not an object");

  SafetensorsHeader header;
  header.data_start = 8 + n;
  header.data_size = file_size - header.data_start;
  for (auto it = json.begin(); it != json.end(); ++it) {
    const std::string& name = it.key();
    const Json& value = it.value();
    if (name == "__metadata__") {
      if (!value.is_object()) header_error(path, "\"__metadata__\" is not an object");
      for (auto m = value.begin(); m != value.end(); ++m) {
        if (!m.value().is_string()) {
          header_error(path, "\"__metadata__\" value for '" + m.key() + "' is a " + m.value().type_name() +
                                 ", expected a string");
        }
        header.metadata[m.key()] = m.value().get<std::string>();
      }
      continue;
    }
    if (!value.is_object()) tensor_error(path, name, "entry is not an object");
    for (const char* field : {"dtype", "shape", "data_offsets"}) {
      if (!value.contains(field)) tensor_error(path, name, std::string("missing \"") + field + "\"");
    }
    SafetensorsEntry entry;
    entry.name = name;
    const Json& dtype = value["dtype"];
    if (!dtype.is_string()) tensor_error(path, name, "\"dtype\" is not a string");
    entry.dtype = dtype.get<std::string>();
    entry.scalar_type = safetensors_dtype_to_torch(entry.dtype, path + ": safetensors tensor '" + name + "'");
    const Json& shape = value["shape"];
    if (!shape.is_array()) tensor_error(path, name, "\"shape\" is not an array");
    std::uint64_t elements = 1;
    for (const Json& dim : shape) {
      if (!dim.is_number_unsigned()) tensor_error(path, name, "shape entry " + dim.dump() + " is not a non-negative integer");
      const std::uint64_t d = dim.get<std::uint64_t>();
      if (d > static_cast<std::uint64_t>(INT64_MAX)) tensor_error(path, name, "shape entry " + dim.dump() + " is too large");
      if (__builtin_mul_overflow(elements, d, &elements)) tensor_error(path, name, "shape " + shape.dump() + " overflows");
      entry.shape.push_back(static_cast<std::int64_t>(d));
    }
    const Json& offsets = value["data_offsets"];
    if (!offsets.is_array() || offsets.size() != 2 || !offsets[0].is_number_unsigned() ||
        !offsets[1].is_number_unsigned()) {
      tensor_error(path, name, "\"data_offsets\" is not a pair of non-negative integers: " + offsets.dump());
    }
    entry.begin = offsets[0].get<std::uint64_t>();
    entry.end = offsets[1].get<std::uint64_t>();
    if (entry.end < entry.begin) tensor_error(path, name, "data_offsets " + offsets.dump() + " end before they begin");
    std::uint64_t nbytes = 0;
    if (__builtin_mul_overflow(elements, dtype_size(entry.scalar_type), &nbytes)) {
      tensor_error(path, name, "shape " + shape.dump() + " x " + entry.dtype + " size overflows");
    }
    if (entry.end - entry.begin != nbytes) {
      tensor_error(path, name, "shape " + shape.dump() + " of " + entry.dtype + " needs " + std::to_string(nbytes) +
                                   " bytes but data_offsets " + offsets.dump() + " hold " +
                                   std::to_string(entry.end - entry.begin));
    }
    header.entries.push_back(std::move(entry));
  }

  std::stable_sort(header.entries.begin(), header.entries.end(), [](const SafetensorsEntry& a, const SafetensorsEntry& b) {
    return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
  });
  std::uint64_t expected = 0;
  for (const auto& e : header.entries) {
    if (e.begin != expected) {
      const std::string range = "[" + std::to_string(e.begin) + ", " + std::to_string(e.end) + ")";
      tensor_error(path, e.name, e.begin < expected ? "byte range " + range + " overlaps the previous tensor (which ends at " + std::to_string(expected) + ")"
                                                    : "byte range " + range + " leaves a gap after offset " + std::to_string(expected));
    }
    if (e.end > header.data_size) {
      tensor_error(path, e.name, "data_offsets end " + std::to_string(e.end) + " past the data section (" +
                                     std::to_string(header.data_size) + " bytes)");
    }
    expected = e.end;
  }
  if (expected != header.data_size) {
    header_error(path, "tensors cover " + std::to_string(expected) + " bytes but the data section holds " +
                           std::to_string(header.data_size) + " (trailing bytes or a truncated header)");
  }
  return header;
}

std::string serialize_safetensors_header(const std::vector<SafetensorsEntry>& entries,
                                         const std::map<std::string, std::string>& metadata) {
  Json json = Json::object();
  if (!metadata.empty()) {
    Json meta = Json::object();
    for (const auto& [k, v] : metadata) meta[k] = v;
    json["__metadata__"] = std::move(meta);
  }
  for (const auto& e : entries) {
    Json entry = Json::object();
    entry["dtype"] = e.dtype;
    entry["shape"] = e.shape;
    entry["data_offsets"] = {e.begin, e.end};
    json[e.name] = std::move(entry);
  }
  std::string text = json.dump();
  text.append((8 - text.size() % 8) % 8, ' ');
  std::string out(8, '\0');
  std::uint64_t n = text.size();
  for (int i = 0; i < 8; ++i) out[i] = static_cast<char>((n >> (8 * i)) & 0xFF);
  return out + text;
}

}  // namespace sdtrain
