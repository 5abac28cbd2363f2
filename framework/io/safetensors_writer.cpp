#include "framework/io/safetensors_writer.h"

#include <nlohmann/json.hpp>

#include <set>

#include "framework/io/atomic_file.h"
#include "framework/io/safetensors_format.h"
#include "sdtrain/errors.h"

namespace sdtrain {

void save_safetensors(const std::string& path, const std::vector<std::pair<std::string, torch::Tensor>>& tensors,
                      const std::map<std::string, std::string>& metadata, bool overwrite) {
  std::vector<SafetensorsEntry> entries;
  entries.reserve(tensors.size());
  std::set<std::string> seen;
  std::uint64_t offset = 0;
  for (const auto& [name, t] : tensors) {
    const std::string context = path + ": tensor '" + name + "'";
    if (name == "__metadata__") throw FormatError(context + ": the name is reserved");
    if (!seen.insert(name).second) throw FormatError(context + ": duplicate name");
    if (!t.defined()) throw FormatError(context + ": undefined tensor");
    SafetensorsEntry e;
    e.name = name;
    e.dtype = torch_dtype_to_safetensors(t.scalar_type(), context);
    e.scalar_type = t.scalar_type();
    e.shape = t.sizes().vec();
    e.begin = offset;
    offset += static_cast<std::uint64_t>(t.numel()) * t.element_size();
    e.end = offset;
    entries.push_back(std::move(e));
  }
  std::string header;
  try {
    header = serialize_safetensors_header(entries, metadata);
  } catch (const nlohmann::json::exception& e) {
    throw FormatError(path + ": cannot encode the header (names and metadata must be UTF-8): " + e.what());
  }
  AtomicFile out(path, overwrite);
  out.write(header.data(), header.size());
  for (const auto& [name, t] : tensors) {
    torch::Tensor c = t.detach().to(torch::kCPU).contiguous();
    if (c.numel() > 0) out.write(c.data_ptr(), static_cast<std::size_t>(c.numel()) * c.element_size());
  }
  out.commit();
}

}  // namespace sdtrain
