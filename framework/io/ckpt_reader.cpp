#include "framework/io/ckpt_reader.h"

#include <cstring>
#include <mutex>
#include <unordered_map>

#include "framework/io/torch_pickle_types.h"
#include "framework/io/zip_archive.h"
#include "framework/util/strings.h"
#include "sdtrain/errors.h"

namespace sdtrain {
namespace {

// The "<prefix>/" of the single "<prefix>/data.pkl" entry.
std::string find_prefix(const ZipArchive& zip) {
  std::string prefix;
  int found = 0;
  for (const auto& name : zip.names()) {
    if (ends_with(name, "/data.pkl") && name.find('/') == name.size() - 9) {
      prefix = name.substr(0, name.size() - 8);
      ++found;
    } else if (name == "data.pkl") {
      prefix = "";
      ++found;
    }
  }
  if (found == 0) throw FormatError(zip.path() + ": no data.pkl in the archive (not a torch.save file)");
  if (found > 1) throw FormatError(zip.path() + ": several data.pkl entries in the archive");
  return prefix;
}

bool is_zip(const std::string& path) {
  std::FILE* f = std::fopen(path.c_str(), "rb");
  if (f == nullptr) return true;  // let the zip reader report the open error
  unsigned char magic[4] = {};
  const std::size_t n = std::fread(magic, 1, 4, f);
  std::fclose(f);
  return n == 4 && magic[0] == 'P' && magic[1] == 'K';
}

torch::Tensor byteswapped(const std::uint8_t* data, std::int64_t numel, torch::Dtype dtype) {
  torch::Tensor out = torch::empty({numel}, torch::TensorOptions().dtype(dtype));
  const std::size_t element = c10::elementSize(dtype);
  auto* dst = static_cast<std::uint8_t*>(out.data_ptr());
  const std::size_t swap = dtype == torch::kComplexFloat ? 4 : dtype == torch::kComplexDouble ? 8 : element;
  for (std::size_t i = 0; i < static_cast<std::size_t>(numel) * element; i += swap) {
    for (std::size_t k = 0; k < swap; ++k) dst[i + k] = data[i + swap - 1 - k];
  }
  return out;
}

}  // namespace

CkptContents load_ckpt(const std::string& path, const CkptLoadOptions& options) {
  if (!is_zip(path)) {
    throw FormatError(path + ": not a zip archive; the legacy (torch < 1.6) torch.save format is not supported, "
                             "re-save it with a recent torch");
  }
  auto zip = std::make_shared<ZipArchive>(path);
  const std::string prefix = find_prefix(*zip);
  bool big_endian = false;
  if (zip->contains(prefix + "byteorder")) {
    const auto order = zip->read(prefix + "byteorder");
    const std::string text(reinterpret_cast<const char*>(order.data), order.size);
    if (text != "little" && text != "big") throw FormatError(path + ": unknown byteorder '" + text + "'");
    big_endian = text == "big";
  }
  const std::string pickle_name = prefix + "data.pkl";
  const auto pickle = zip->read(pickle_name, /*verify_crc=*/true);

  std::unordered_map<std::string, torch::Tensor> storages;
  PersistentLoader loader = [&](const PickleValue& pid) -> PickleValue {
    if (pid.kind() != PickleValue::Kind::kTuple || pid.items().size() != 5 || !pid.items()[0].is_string() ||
        pid.items()[0].as_string() != "storage") {
      throw FormatError("persistent id " + pid.repr() + " is not a torch storage reference");
    }
    const auto& f = pid.items();
    if (f[1].kind() != PickleValue::Kind::kGlobal) throw FormatError("storage type is " + f[1].describe());
    const auto dtype = storage_type_dtype(f[1].global_name());
    if (!dtype) throw FormatError("unsupported storage type '" + f[1].global_name() + "'");
    const std::string key = f[2].kind() == PickleValue::Kind::kInt ? std::to_string(f[2].as_int()) : f[2].as_string();
    const std::int64_t numel = f[4].as_int();
    if (numel < 0) throw FormatError("storage '" + key + "' has a negative size");
    auto cached = storages.find(key);
    if (cached != storages.end()) {
      if (cached->second.scalar_type() != *dtype) throw FormatError("storage '" + key + "' used with two dtypes");
      return PickleValue::from_tensor(cached->second);
    }
    const std::string entry_name = prefix + "data/" + key;
    if (!zip->contains(entry_name)) throw FormatError("storage entry '" + entry_name + "' missing");
    const std::size_t element = c10::elementSize(*dtype);
    std::uint64_t nbytes = 0;
    if (__builtin_mul_overflow(static_cast<std::uint64_t>(numel), element, &nbytes) || zip->size(entry_name) < nbytes) {
      throw FormatError("storage entry '" + entry_name + "' holds " + std::to_string(zip->size(entry_name)) +
                        " bytes, fewer than its " + std::to_string(numel) + " elements of " +
                        std::string(c10::toString(*dtype)) + " need");
    }
    const ZipArchive::Entry data = zip->read(entry_name, options.verify_crc);
    const auto opts = torch::TensorOptions().dtype(*dtype);
    torch::Tensor storage;
    if (numel == 0) {
      storage = torch::empty({0}, opts);
    } else if (big_endian && element > 1) {
      storage = byteswapped(data.data, numel, *dtype);
    } else if (reinterpret_cast<std::uintptr_t>(data.data) % element != 0) {
      storage = torch::empty({numel}, opts);
      std::memcpy(storage.data_ptr(), data.data, nbytes);
    } else {
      std::shared_ptr<void> owner = data.owner;
      storage = torch::from_blob(data.data, {numel}, [owner](void*) mutable { owner.reset(); }, opts);
    }
    storages.emplace(key, storage);
    return PickleValue::from_tensor(storage);
  };

  PickleReaderOptions reader_options;
  reader_options.policy = options.policy;
  reader_options.tolerated = options.tolerated;
  PickleReader reader(pickle.data, pickle.size, path + ":" + pickle_name, loader, reader_options);
  CkptContents contents;
  contents.root = reader.load();
  contents.tolerated_globals = reader.tolerated_globals_seen();
  return contents;
}

std::vector<std::pair<std::string, torch::Tensor>> load_ckpt_state_dict(const std::string& path, const std::string& key,
                                                                        std::vector<std::string>* tolerated_out) {
  CkptLoadOptions options;
  options.policy = GlobalPolicy::kTolerateKnownData;
  CkptContents contents = load_ckpt(path, options);
  if (!contents.root.is_dict()) throw FormatError(path + ": checkpoint holds a " + contents.root.describe() + ", not a dict");
  const PickleDict& root = contents.root.as_dict();
  const PickleValue* state = root.find(key);
  if (state == nullptr) {
    bool all_tensors = root.size() > 0;
    std::vector<std::string> keys;
    for (const auto& [k, v] : root.items()) {
      all_tensors = all_tensors && k.is_string() && v.is_tensor();
      keys.push_back(k.repr(0));
    }
    if (!all_tensors) {
      throw FormatError(path + ": no '" + key + "' in the checkpoint (top-level keys: " + join(keys) + ")");
    }
    state = &contents.root;
  }
  if (!state->is_dict()) throw FormatError(path + ": '" + key + "' is a " + state->describe() + ", not a dict");
  std::vector<std::pair<std::string, torch::Tensor>> out;
  for (const auto& [k, v] : state->as_dict().items()) {
    if (!k.is_string()) throw FormatError(path + ": state dict key " + k.repr(0) + " is not a string");
    if (v.is_refused()) {
      throw FormatError(path + ": state dict entry '" + k.as_string() + "' is an object of the refused global '" +
                        v.global_name() + "' (never executed)");
    }
    if (!v.is_tensor()) throw FormatError(path + ": state dict entry '" + k.as_string() + "' is a " + v.describe() + ", not a tensor");
    out.emplace_back(k.as_string(), v.as_tensor());
  }
  if (!contents.tolerated_globals.empty()) {
    TORCH_WARN(path, ": ignored objects of globals outside the state dict (never executed): ",
               join(contents.tolerated_globals));
  }
  if (tolerated_out != nullptr) *tolerated_out = contents.tolerated_globals;
  // Break references (including any cycles through placeholders) without deep recursion.
  std::vector<PickleValue> roots{std::move(contents.root)};
  dismantle(roots);
  return out;
}

}  // namespace sdtrain
