#pragma once
/// Reads a .safetensors file through a memory mapping.
#include <torch/torch.h>

#include <map>
#include <memory>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "framework/io/mapped_file.h"
#include "framework/io/safetensors_format.h"

namespace sdtrain {

/// A validated, memory-mapped safetensors file. The constructor maps the file and validates the
/// whole header (see parse_safetensors_header); no tensor data is read until asked for.
/// tensor() returns a CPU tensor that views the mapping without copying when its data is aligned
/// to its element size (always so for files written by the reference writer or by sdtrain): the
/// tensor holds the mapping alive, so it outlives the reader; pages are read on first touch, and
/// an in-place change touches only private copy-on-write pages, never the file; when the
/// tensor's storage goes, the pages no other tensor views leave resident memory (MappedFile::hold).
/// A misaligned tensor is copied into ordinary memory instead. Thread-safe for concurrent reads.
class SafetensorsReader {
 public:
  /// Opens and validates `path`. Throws FormatError naming the file (and tensor) on any defect.
  explicit SafetensorsReader(const std::string& path);

  const std::string& path() const { return file_->path(); }
  /// Tensor names in the order of their data in the file.
  const std::vector<std::string>& names() const { return names_; }
  /// Number of tensors.
  std::size_t size() const { return names_.size(); }
  bool contains(const std::string& name) const { return index_.count(name) != 0; }
  /// The header entry (dtype, shape, byte range); FormatError naming the closest name if absent.
  const SafetensorsEntry& entry(const std::string& name) const;
  /// The "__metadata__" map.
  const std::map<std::string, std::string>& metadata() const { return header_.metadata; }
  /// The tensor `name` (see the class comment for when it is a view and when a copy).
  torch::Tensor tensor(const std::string& name) const;
  /// Elements [begin, begin + count) of tensor `name`, flattened, as a 1-D tensor (a view or a
  /// copy as tensor()) with a hold of its own on the mapping: a large tensor copied out slice by
  /// slice then gives each slice's pages back as soon as the slice is dropped, instead of keeping
  /// the whole tensor's pages resident until its end. FormatError naming the file and tensor when
  /// the range is not inside the tensor.
  torch::Tensor elements(const std::string& name, int64_t begin, int64_t count) const;
  /// Every tensor, in file order.
  std::vector<std::pair<std::string, torch::Tensor>> tensors() const;

 private:
  /// `shape`-shaped tensor of the `size` bytes at `offset` of the data section.
  torch::Tensor at(std::uint64_t offset, std::uint64_t size, torch::IntArrayRef shape, torch::Dtype dtype) const;

  std::shared_ptr<MappedFile> file_;
  SafetensorsHeader header_;
  std::vector<std::string> names_;
  std::unordered_map<std::string, std::size_t> index_;
};

}  // namespace sdtrain
