#include "framework/io/safetensors_reader.h"

#include <cstring>

#include "framework/util/strings.h"
#include "sdtrain/errors.h"

namespace sdtrain {

SafetensorsReader::SafetensorsReader(const std::string& path) : file_(MappedFile::open(path)) {
  header_ = parse_safetensors_header(file_->data(), file_->size(), path);
  names_.reserve(header_.entries.size());
  for (std::size_t i = 0; i < header_.entries.size(); ++i) {
    names_.push_back(header_.entries[i].name);
    index_.emplace(header_.entries[i].name, i);
  }
}

const SafetensorsEntry& SafetensorsReader::entry(const std::string& name) const {
  auto it = index_.find(name);
  if (it == index_.end()) {
    const std::string near = closest_match(name, names_);
    throw FormatError(path() + ": no tensor '" + name + "'" + (near.empty() ? "" : " (did you mean '" + near + "'?)"));
  }
  return header_.entries[it->second];
}

torch::Tensor SafetensorsReader::tensor(const std::string& name) const {
  const SafetensorsEntry& e = entry(name);
  return at(e.begin, e.end - e.begin, e.shape, e.scalar_type);
}

torch::Tensor SafetensorsReader::elements(const std::string& name, int64_t begin, int64_t count) const {
  const SafetensorsEntry& e = entry(name);
  const auto element = static_cast<int64_t>(c10::elementSize(e.scalar_type));
  const auto numel = static_cast<int64_t>((e.end - e.begin) / static_cast<std::uint64_t>(element));
  if (begin < 0 || count < 0 || begin > numel || count > numel - begin) {
    throw FormatError(path() + ": tensor '" + name + "' has " + std::to_string(numel) + " elements, elements [" +
                      std::to_string(begin) + ", " + std::to_string(begin + count) + ") were asked for");
  }
  return at(e.begin + static_cast<std::uint64_t>(begin * element), static_cast<std::uint64_t>(count * element),
            {count}, e.scalar_type);
}

torch::Tensor SafetensorsReader::at(std::uint64_t offset, std::uint64_t size, torch::IntArrayRef shape,
                                    torch::Dtype dtype) const {
  const auto options = torch::TensorOptions().dtype(dtype);
  const std::size_t element = c10::elementSize(dtype);
  std::uint8_t* data = file_->mutable_data() + header_.data_start + offset;
  if (size == 0) return torch::empty(shape, options);
  if (reinterpret_cast<std::uintptr_t>(data) % element != 0) {
    torch::Tensor copy = torch::empty(shape, options);
    std::memcpy(copy.data_ptr(), data, size);
    return copy;
  }
  std::shared_ptr<void> hold = file_->hold(data, size);
  return torch::from_blob(data, shape, [hold](void*) mutable { hold.reset(); }, options);
}

std::vector<std::pair<std::string, torch::Tensor>> SafetensorsReader::tensors() const {
  std::vector<std::pair<std::string, torch::Tensor>> out;
  out.reserve(names_.size());
  for (const auto& name : names_) out.emplace_back(name, tensor(name));
  return out;
}

}  // namespace sdtrain
