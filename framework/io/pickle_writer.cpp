#include "framework/io/pickle_writer.h"

#include <cstring>

#include "framework/io/torch_pickle_types.h"
#include "sdtrain/errors.h"

namespace sdtrain {

std::string PickleWriter::dump(const PickleValue& value) {
  out_ = "\x80\x02";
  write(value, 0);
  out_.push_back('.');
  return std::move(out_);
}

void PickleWriter::write_int(std::int64_t v) {
  if (v >= 0 && v < 256) {
    out_.push_back('K');
    out_.push_back(static_cast<char>(v));
  } else if (v >= 0 && v < 65536) {
    out_.push_back('M');
    out_.push_back(static_cast<char>(v & 0xFF));
    out_.push_back(static_cast<char>(v >> 8));
  } else if (v >= INT32_MIN && v <= INT32_MAX) {
    out_.push_back('J');
    const auto u = static_cast<std::uint32_t>(static_cast<std::int32_t>(v));
    for (int i = 0; i < 4; ++i) out_.push_back(static_cast<char>((u >> (8 * i)) & 0xFF));
  } else {  // LONG1: minimal little-endian two's complement
    const auto u = static_cast<std::uint64_t>(v);
    int n = 8;
    while (n > 1) {
      const std::uint8_t top = (u >> (8 * (n - 1))) & 0xFF;
      const std::uint8_t next_sign = (u >> (8 * (n - 2) + 7)) & 1;
      if ((top == 0x00 && next_sign == 0) || (top == 0xFF && next_sign == 1)) --n; else break;
    }
    out_.push_back('\x8a');
    out_.push_back(static_cast<char>(n));
    for (int i = 0; i < n; ++i) out_.push_back(static_cast<char>((u >> (8 * i)) & 0xFF));
  }
}

void PickleWriter::write_string(const std::string& s) {
  out_.push_back('X');
  const auto n = static_cast<std::uint32_t>(s.size());
  if (s.size() > UINT32_MAX) throw FormatError(context_ + ": string too long for a pickle");
  for (int i = 0; i < 4; ++i) out_.push_back(static_cast<char>((n >> (8 * i)) & 0xFF));
  out_ += s;
}

void PickleWriter::write_global(const std::string& qualified_name) {
  const auto dot = qualified_name.rfind('.');
  out_ += "c" + qualified_name.substr(0, dot) + "\n" + qualified_name.substr(dot + 1) + "\n";
}

void PickleWriter::write_tensor(const torch::Tensor& tensor) {
  const torch::Tensor t = tensor.detach();
  const torch::Dtype dtype = t.scalar_type();
  const std::string storage_type = dtype_storage_type(dtype, context_);
  const std::size_t element = t.element_size();
  const c10::Storage& storage = t.storage();
  const void* id = storage.unsafeGetStorageImpl();
  auto it = storage_keys_.find(id);
  std::size_t key;
  if (it == storage_keys_.end()) {
    if (storage.nbytes() % element != 0) throw FormatError(context_ + ": a tensor storage is not a whole number of elements");
    const auto numel = static_cast<std::int64_t>(storage.nbytes() / element);
    torch::Tensor whole = torch::empty({0}, t.options()).set_(storage, 0, {numel}, {1});
    key = storages_.size();
    storages_.push_back(whole.device().is_cpu() ? whole : whole.to(torch::kCPU));
    storage_keys_.emplace(id, key);
  } else {
    key = it->second;
    if (storages_[key].scalar_type() != dtype) {
      throw FormatError(context_ + ": two tensors view one storage with different dtypes (torch.save refuses this too)");
    }
  }
  write_global("torch._utils._rebuild_tensor_v2");
  out_.push_back('(');
  out_.push_back('(');  // persistent id
  write_string("storage");
  write_global(storage_type);
  write_string(std::to_string(key));
  write_string("cpu");
  write_int(storages_[key].numel());
  out_ += "tQ";
  write_int(t.storage_offset());
  out_.push_back('(');
  for (auto s : t.sizes()) write_int(s);
  out_.push_back('t');
  out_.push_back('(');
  for (auto s : t.strides()) write_int(s);
  out_.push_back('t');
  out_.push_back('\x89');  // requires_grad = False
  write_global("collections.OrderedDict");
  out_ += ")R";  // backward_hooks = OrderedDict()
  out_ += "tR";
}

void PickleWriter::write(const PickleValue& v, int depth) {
  if (depth > 1000) throw FormatError(context_ + ": value nested deeper than 1000 (or cyclic)");
  using K = PickleValue::Kind;
  switch (v.kind()) {
    case K::kNone: out_.push_back('N'); return;
    case K::kBool: out_.push_back(v.as_bool() ? '\x88' : '\x89'); return;
    case K::kInt: write_int(v.as_int()); return;
    case K::kFloat: {
      const double d = v.as_float();
      std::uint64_t bits;
      std::memcpy(&bits, &d, 8);
      out_.push_back('G');
      for (int i = 7; i >= 0; --i) out_.push_back(static_cast<char>((bits >> (8 * i)) & 0xFF));
      return;
    }
    case K::kString: write_string(v.as_string()); return;
    case K::kBytes: {  // _codecs.encode(<bytes as latin-1 text>, 'latin1')
      std::string text;
      for (unsigned char c : v.as_bytes()) {
        if (c < 0x80) {
          text.push_back(static_cast<char>(c));
        } else {
          text.push_back(static_cast<char>(0xC0 | (c >> 6)));
          text.push_back(static_cast<char>(0x80 | (c & 0x3F)));
        }
      }
      write_global("_codecs.encode");
      write_string(text);
      write_string("latin1");
      out_ += "\x86R";
      return;
    }
    case K::kList:
      out_.push_back(']');
      if (!v.items().empty()) {
        out_.push_back('(');
        for (const auto& item : v.items()) write(item, depth + 1);
        out_.push_back('e');
      }
      return;
    case K::kTuple:
      out_.push_back('(');
      for (const auto& item : v.items()) write(item, depth + 1);
      out_.push_back('t');
      return;
    case K::kSet:
      write_global("builtins.set");
      write(PickleValue::list(v.items()), depth + 1);
      out_ += "\x85R";
      return;
    case K::kDict:
      out_.push_back('}');
      if (v.as_dict().size() > 0) {
        out_.push_back('(');
        for (const auto& [key, value] : v.as_dict().items()) {
          write(key, depth + 1);
          write(value, depth + 1);
        }
        out_.push_back('u');
      }
      return;
    case K::kTensor: write_tensor(v.as_tensor()); return;
    case K::kGlobal:
      if (!dtype_from_global(v.global_name())) {
        throw FormatError(context_ + ": cannot save the global '" + v.global_name() + "'");
      }
      write_global(v.global_name());
      return;
    case K::kRefused:
      throw FormatError(context_ + ": cannot save an object of the refused global '" + v.global_name() + "'");
  }
}

}  // namespace sdtrain
