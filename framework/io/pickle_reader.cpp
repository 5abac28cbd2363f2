#include "framework/io/pickle_reader.h"

#include <cstring>
#include <limits>
#include <unordered_set>

#include "framework/io/torch_pickle_types.h"
#include "framework/util/strings.h"
#include "sdtrain/errors.h"

namespace sdtrain {
namespace {

// Globals that are data, not behaviour: referencing them is harmless and has a meaning here.
bool is_allowed_global(const std::string& qn) {
  static const std::unordered_set<std::string> kCallables = {
      "collections.OrderedDict",
      "builtins.set", "builtins.frozenset", "__builtin__.set", "__builtin__.frozenset",
      "_codecs.encode",
      "torch._utils._rebuild_tensor", "torch._utils._rebuild_tensor_v2", "torch._utils._rebuild_tensor_v3",
      "torch._utils._rebuild_parameter", "torch._utils._rebuild_parameter_with_state",
      "torch._tensor._rebuild_from_type_v2",
      "torch.Size", "torch.device",
      // Types that only appear as arguments of the calls above.
      "torch.Tensor", "torch.nn.parameter.Parameter",
  };
  return kCallables.count(qn) != 0 || storage_type_dtype(qn).has_value() || dtype_from_global(qn).has_value();
}

// Where CPython's pickle names os functions by their implementing module.
std::string display_name(const std::string& qn) {
  if (starts_with(qn, "posix.") || starts_with(qn, "nt.")) return qn + " (os." + qn.substr(qn.find('.') + 1) + ")";
  // Protocol 0-2 pickles carry Python 2 module names (pickle's fix_imports).
  if (starts_with(qn, "__builtin__.")) return qn + " (builtins." + qn.substr(12) + ")";
  if (starts_with(qn, "commands.")) return qn + " (subprocess." + qn.substr(9) + ")";
  return qn;
}

bool prefix_matches(const std::string& qn, const std::string& prefix) {
  if (!prefix.empty() && prefix.back() == '.') return starts_with(qn, prefix);
  return qn == prefix;
}

std::int64_t checked_int(const PickleValue& v, const char* what) {
  if (v.kind() != PickleValue::Kind::kInt) throw FormatError(std::string(what) + " is " + v.describe() + ", expected int");
  return v.as_int();
}

std::vector<std::int64_t> int_tuple(const PickleValue& v, const char* what) {
  if (!v.is_sequence()) throw FormatError(std::string(what) + " is " + v.describe() + ", expected a tuple of ints");
  std::vector<std::int64_t> out;
  for (const auto& item : v.items()) out.push_back(checked_int(item, what));
  return out;
}

// The view storage[offset] with sizes/strides, after checking that it stays inside the storage.
torch::Tensor rebuild_view(const PickleValue& storage_value, const PickleValue& offset_value,
                           const PickleValue& size_value, const PickleValue& stride_value,
                           std::optional<torch::Dtype> dtype) {
  if (!storage_value.is_tensor()) throw FormatError("tensor storage is " + storage_value.describe());
  torch::Tensor storage = storage_value.as_tensor();
  if (dtype && *dtype != storage.scalar_type()) {
    const auto element = static_cast<std::int64_t>(c10::elementSize(*dtype));
    if (storage.nbytes() % element != 0) throw FormatError("storage size is not a multiple of the tensor's element size");
    storage = storage.view(torch::kUInt8).view(*dtype);
  }
  const std::int64_t offset = checked_int(offset_value, "storage offset");
  const auto sizes = int_tuple(size_value, "tensor size");
  const auto strides = int_tuple(stride_value, "tensor stride");
  if (sizes.size() != strides.size()) throw FormatError("tensor size and stride differ in length");
  if (offset < 0) throw FormatError("negative storage offset");
  bool empty = false;
  std::int64_t last = offset;
  for (std::size_t i = 0; i < sizes.size(); ++i) {
    if (sizes[i] < 0 || strides[i] < 0) throw FormatError("negative tensor size or stride");
    if (sizes[i] == 0) empty = true;
  }
  if (!empty) {
    for (std::size_t i = 0; i < sizes.size(); ++i) {
      std::int64_t span = 0;
      if (__builtin_mul_overflow(sizes[i] - 1, strides[i], &span) || __builtin_add_overflow(last, span, &last)) {
        throw FormatError("tensor view overflows");
      }
    }
    if (last >= storage.numel()) {
      throw FormatError("tensor view reaches element " + std::to_string(last) + " of a storage of " +
                        std::to_string(storage.numel()));
    }
  } else {
    std::int64_t numel = 1;
    for (auto s : sizes) {
      if (s > 0 && __builtin_mul_overflow(numel, s, &numel)) throw FormatError("tensor size overflows");
    }
    if (offset > storage.numel()) throw FormatError("storage offset past the storage");
  }
  return storage.as_strided(sizes, strides, offset);
}

std::string latin1_from_utf8(const std::string& s) {
  std::string out;
  for (std::size_t i = 0; i < s.size(); ++i) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (c < 0x80) {
      out.push_back(static_cast<char>(c));
    } else if ((c & 0xE0) == 0xC0 && i + 1 < s.size() && c <= 0xC3) {
      out.push_back(static_cast<char>(((c & 0x1F) << 6) | (static_cast<unsigned char>(s[++i]) & 0x3F)));
    } else {
      throw FormatError("_codecs.encode: text is not latin-1");
    }
  }
  return out;
}

}  // namespace

std::vector<std::string> default_tolerated_globals() {
  return {"pathlib.", "argparse.Namespace", "omegaconf.", "pytorch_lightning.", "lightning.",
          "lightning_fabric.", "numpy.core.multiarray.scalar", "numpy._core.multiarray.scalar",
          "numpy.core.multiarray._reconstruct", "numpy._core.multiarray._reconstruct", "numpy.dtype",
          "numpy.ndarray", "datetime.", "typing."};
}

PickleReader::PickleReader(const std::uint8_t* data, std::size_t size, std::string name, PersistentLoader loader,
                           PickleReaderOptions options)
    : data_(data), size_(size), name_(std::move(name)), loader_(std::move(loader)), options_(std::move(options)) {
  if (options_.policy == GlobalPolicy::kTolerateKnownData && options_.tolerated.empty()) {
    options_.tolerated = default_tolerated_globals();
  }
}

void PickleReader::fail(const std::string& what) const {
  throw FormatError(name_ + ": " + what + " (pickle byte " + std::to_string(opcode_pos_) + ")");
}

std::uint8_t PickleReader::read_byte() {
  if (pos_ >= size_) fail("pickle truncated");
  return data_[pos_++];
}

const std::uint8_t* PickleReader::read_bytes(std::uint64_t n) {
  if (n > size_ - pos_) fail("pickle truncated (needs " + std::to_string(n) + " more bytes)");
  const std::uint8_t* p = data_ + pos_;
  pos_ += static_cast<std::size_t>(n);
  return p;
}

std::uint64_t PickleReader::read_uint(int n) {
  const std::uint8_t* p = read_bytes(static_cast<std::uint64_t>(n));
  std::uint64_t v = 0;
  for (int i = n - 1; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}

std::string PickleReader::read_line() {
  const void* nl = std::memchr(data_ + pos_, '\n', size_ - pos_);
  if (nl == nullptr) fail("pickle truncated (unterminated line)");
  const std::size_t end = static_cast<const std::uint8_t*>(nl) - data_;
  std::string line(reinterpret_cast<const char*>(data_ + pos_), end - pos_);
  pos_ = end + 1;
  if (!line.empty() && line.back() == '\r') line.pop_back();
  return line;
}

PickleValue PickleReader::pop() {
  if (stack_.empty() || (!marks_.empty() && stack_.size() <= marks_.back())) fail("pickle stack underflow");
  PickleValue v = std::move(stack_.back());
  stack_.pop_back();
  return v;
}

PickleValue& PickleReader::top() {
  if (stack_.empty() || (!marks_.empty() && stack_.size() <= marks_.back())) fail("pickle stack underflow");
  return stack_.back();
}

std::vector<PickleValue> PickleReader::pop_mark() {
  if (marks_.empty()) fail("pickle MARK missing");
  const std::size_t mark = marks_.back();
  marks_.pop_back();
  std::vector<PickleValue> items(std::make_move_iterator(stack_.begin() + static_cast<std::ptrdiff_t>(mark)),
                                 std::make_move_iterator(stack_.end()));
  stack_.resize(mark);
  return items;
}

PickleValue PickleReader::resolve_global(const std::string& module, const std::string& name) {
  const std::string qn = module + "." + name;
  if (is_allowed_global(qn)) return PickleValue::global(qn);
  if (options_.policy == GlobalPolicy::kTolerateKnownData) {
    for (const auto& prefix : options_.tolerated) {
      if (prefix_matches(qn, prefix)) {
        bool seen = false;
        for (const auto& s : tolerated_seen_) seen = seen || s == qn;
        if (!seen) tolerated_seen_.push_back(qn);
        return PickleValue::refused(qn);
      }
    }
  }
  fail("refused global '" + display_name(qn) +
       "': only tensors and plain containers are loaded and nothing in the file is executed");
}

PickleValue PickleReader::call(const PickleValue& callable, std::vector<PickleValue> args) {
  if (callable.kind() == PickleValue::Kind::kRefused) {
    // Inert: the arguments are kept as data, the global is never looked up or run.
    return PickleValue::refused(callable.global_name(), true, std::move(args), PickleValue());
  }
  if (callable.kind() != PickleValue::Kind::kGlobal) fail("call of a non-callable " + callable.describe());
  const std::string& qn = callable.global_name();
  auto want = [&](std::size_t lo, std::size_t hi) {
    if (args.size() < lo || args.size() > hi) {
      fail(qn + " called with " + std::to_string(args.size()) + " arguments");
    }
  };
  try {
    if (qn == "collections.OrderedDict") {
      want(0, 1);
      PickleValue d = PickleValue::dict();
      if (!args.empty() && !args[0].is_none()) {
        if (args[0].is_dict()) {
          for (const auto& [k, v] : args[0].as_dict().items()) d.mutable_dict().set(k, v);
        } else {
          for (const auto& pair : args[0].items()) {
            if (!pair.is_sequence() || pair.items().size() != 2) fail("OrderedDict item is not a pair");
            d.mutable_dict().set(pair.items()[0], pair.items()[1]);
          }
        }
      }
      return d;
    }
    if (qn == "builtins.set" || qn == "builtins.frozenset" || qn == "__builtin__.set" || qn == "__builtin__.frozenset") {
      want(0, 1);
      return PickleValue::set(args.empty() ? std::vector<PickleValue>{} : args[0].items());
    }
    if (qn == "_codecs.encode") {
      want(1, 2);
      const std::string encoding = args.size() > 1 ? args[1].as_string() : "utf-8";
      if (encoding == "latin1" || encoding == "latin-1") return PickleValue::from_bytes(latin1_from_utf8(args[0].as_string()));
      if (encoding == "utf-8" || encoding == "utf8") return PickleValue::from_bytes(args[0].as_string());
      fail("_codecs.encode with unsupported encoding '" + encoding + "'");
    }
    if (qn == "torch._utils._rebuild_tensor") {
      want(4, 4);
      return PickleValue::from_tensor(rebuild_view(args[0], args[1], args[2], args[3], std::nullopt));
    }
    if (qn == "torch._utils._rebuild_tensor_v2") {
      want(6, 7);  // storage, offset, size, stride, requires_grad, backward_hooks[, metadata]
      return PickleValue::from_tensor(rebuild_view(args[0], args[1], args[2], args[3], std::nullopt));
    }
    if (qn == "torch._utils._rebuild_tensor_v3") {
      want(7, 8);  // ... backward_hooks, dtype[, metadata]
      if (args[6].kind() != PickleValue::Kind::kGlobal || !dtype_from_global(args[6].global_name())) {
        fail("_rebuild_tensor_v3 dtype is " + args[6].describe());
      }
      return PickleValue::from_tensor(
          rebuild_view(args[0], args[1], args[2], args[3], dtype_from_global(args[6].global_name())));
    }
    if (qn == "torch._utils._rebuild_parameter" || qn == "torch._utils._rebuild_parameter_with_state") {
      want(3, 4);  // data, requires_grad, backward_hooks[, state]; loaded as a plain tensor
      if (!args[0].is_tensor()) fail(qn + " of " + args[0].describe());
      return args[0];
    }
    if (qn == "torch._tensor._rebuild_from_type_v2") {
      want(3, 4);  // func, new_type, args[, state]
      const std::string type = args[1].kind() == PickleValue::Kind::kGlobal ? args[1].global_name() : args[1].describe();
      if (type != "torch.Tensor" && type != "torch.nn.parameter.Parameter") fail("tensor subclass '" + type + "' refused");
      if (args[0].kind() != PickleValue::Kind::kGlobal || !starts_with(args[0].global_name(), "torch._utils._rebuild_")) {
        fail("_rebuild_from_type_v2 of " + args[0].describe());
      }
      return call(args[0], args[2].items());
    }
    if (qn == "torch.Size") {
      want(0, 1);
      return PickleValue::tuple(args.empty() ? std::vector<PickleValue>{} : args[0].items());
    }
    if (qn == "torch.device") {
      want(1, 2);
      std::string device = args[0].as_string();
      if (args.size() == 2 && !args[1].is_none()) device += ":" + std::to_string(args[1].as_int());
      return PickleValue::from_string(device);
    }
  } catch (const FormatError& e) {
    const std::string what = e.what();
    if (starts_with(what, name_)) throw;
    fail(qn + ": " + what);
  } catch (const c10::Error& e) {
    fail(qn + ": " + e.what_without_backtrace());
  }
  fail("global '" + qn + "' cannot be called");
}

void PickleReader::build(PickleValue& target, const PickleValue& state) {
  switch (target.kind()) {
    case PickleValue::Kind::kRefused:
      // Keep the state as inert data (e.g. an argparse.Namespace's attributes).
      target = PickleValue::refused(target.global_name(), true, target.node()->items, state);
      return;
    case PickleValue::Kind::kDict:    // OrderedDict attributes such as a state dict's _metadata
    case PickleValue::Kind::kTensor:  // python attributes on a tensor
      return;
    default:
      fail("BUILD on " + target.describe());
  }
}

PickleValue PickleReader::load() {
  // Declared outside the try: a rejected deep result must be dismantled, not destroyed recursively.
  PickleValue result;
  try {
    result = run();
    // Reject cycles and excessive depth before anything recursive touches the value.
    struct Frame {
      PickleValue::Node* node;
      std::vector<PickleValue::Node*> children;
      std::size_t next = 0;
    };
    std::unordered_map<PickleValue::Node*, int> state;  // 1 = on the path, 2 = done
    auto children_of = [](PickleValue::Node* n) {
      std::vector<PickleValue::Node*> out;
      for (const auto& v : n->items) if (v.node()) out.push_back(v.node().get());
      for (const auto& kv : n->dict.items()) {
        if (kv.first.node()) out.push_back(kv.first.node().get());
        if (kv.second.node()) out.push_back(kv.second.node().get());
      }
      if (n->refused_state && n->refused_state->node()) out.push_back(n->refused_state->node().get());
      return out;
    };
    if (result.node()) {
      std::vector<Frame> path;
      path.push_back({result.node().get(), children_of(result.node().get())});
      state[result.node().get()] = 1;
      while (!path.empty()) {
        Frame& f = path.back();
        if (f.next == f.children.size()) {
          state[f.node] = 2;
          path.pop_back();
          continue;
        }
        PickleValue::Node* child = f.children[f.next++];
        const int s = state[child];
        if (s == 1) fail("pickle structure contains a cycle");
        if (s == 2) continue;
        if (static_cast<int>(path.size()) >= options_.max_depth) {
          fail("pickle nested deeper than " + std::to_string(options_.max_depth));
        }
        state[child] = 1;
        path.push_back({child, children_of(child)});
      }
    }
    // Leftovers (memo, stack) may hold hostile structures the result does not reach.
    std::unordered_set<const PickleValue::Node*> keep;
    for (const auto& kv : state) keep.insert(kv.first);
    std::vector<PickleValue> leftovers = std::move(stack_);
    for (auto& kv : memo_) leftovers.push_back(std::move(kv.second));
    memo_.clear();
    dismantle(leftovers, keep);
    return result;
  } catch (...) {
    std::vector<PickleValue> all = std::move(stack_);
    all.push_back(std::move(result));
    for (auto& kv : memo_) all.push_back(std::move(kv.second));
    memo_.clear();
    dismantle(all);
    throw;
  }
}

PickleValue PickleReader::run() {
  while (true) {
    opcode_pos_ = pos_;
    const std::uint8_t op = read_byte();
    switch (op) {
      case 0x80: {  // PROTO
        const int proto = read_byte();
        if (proto > 5) fail("unsupported pickle protocol " + std::to_string(proto));
        break;
      }
      case 0x95: read_uint(8); break;  // FRAME: we read linearly, frames need no handling
      case '.': {                       // STOP
        PickleValue v = pop();
        return v;
      }
      case '(': marks_.push_back(stack_.size()); break;  // MARK
      case '0': pop(); break;                             // POP
      case '1': pop_mark(); break;                        // POP_MARK
      case '2': stack_.push_back(top()); break;           // DUP
      case 'N': stack_.emplace_back(); break;             // NONE
      case 0x88: stack_.push_back(PickleValue::from_bool(true)); break;
      case 0x89: stack_.push_back(PickleValue::from_bool(false)); break;
      case 'J': stack_.push_back(PickleValue::from_int(static_cast<std::int32_t>(read_uint(4)))); break;
      case 'K': stack_.push_back(PickleValue::from_int(static_cast<std::int64_t>(read_uint(1)))); break;
      case 'M': stack_.push_back(PickleValue::from_int(static_cast<std::int64_t>(read_uint(2)))); break;
      case 0x8a: case 0x8b: {  // LONG1, LONG4: little-endian two's complement
        const std::uint64_t n = read_uint(op == 0x8a ? 1 : 4);
        if (n > 8) fail("integer of " + std::to_string(n) + " bytes is too large");
        const std::uint8_t* p = read_bytes(n);
        std::uint64_t v = 0;
        for (std::uint64_t i = n; i > 0; --i) v = (v << 8) | p[i - 1];
        if (n > 0 && n < 8 && (p[n - 1] & 0x80)) v |= ~std::uint64_t{0} << (8 * n);
        stack_.push_back(PickleValue::from_int(static_cast<std::int64_t>(v)));
        break;
      }
      case 'I': case 'L': {  // INT, LONG (text)
        std::string line = read_line();
        if (op == 'I' && (line == "00" || line == "01")) {
          stack_.push_back(PickleValue::from_bool(line == "01"));
          break;
        }
        if (!line.empty() && line.back() == 'L') line.pop_back();
        try {
          std::size_t used = 0;
          const long long v = std::stoll(line, &used);
          if (used != line.size()) throw std::invalid_argument(line);
          stack_.push_back(PickleValue::from_int(v));
        } catch (const std::exception&) {
          fail("bad integer '" + line + "'");
        }
        break;
      }
      case 'G': {  // BINFLOAT, big-endian double
        const std::uint8_t* p = read_bytes(8);
        std::uint64_t bits = 0;
        for (int i = 0; i < 8; ++i) bits = (bits << 8) | p[i];
        double d;
        std::memcpy(&d, &bits, 8);
        stack_.push_back(PickleValue::from_float(d));
        break;
      }
      case 'F': {  // FLOAT (text)
        const std::string line = read_line();
        try {
          stack_.push_back(PickleValue::from_float(std::stod(line)));
        } catch (const std::exception&) {
          fail("bad float '" + line + "'");
        }
        break;
      }
      case 'X': case 0x8c: case 0x8d: {  // BINUNICODE, SHORT_BINUNICODE, BINUNICODE8
        const std::uint64_t n = read_uint(op == 'X' ? 4 : op == 0x8c ? 1 : 8);
        const std::uint8_t* p = read_bytes(n);
        stack_.push_back(PickleValue::from_string(std::string(reinterpret_cast<const char*>(p), n)));
        break;
      }
      case 'V': stack_.push_back(PickleValue::from_string(read_line())); break;  // UNICODE (raw)
      case 'B': case 'C': case 0x8e: case 0x96:  // BINBYTES, SHORT_BINBYTES, BINBYTES8, BYTEARRAY8
      case 'T': case 'U': {                       // BINSTRING, SHORT_BINSTRING (python 2 str)
        const int width = (op == 'C' || op == 'U') ? 1 : (op == 0x8e || op == 0x96) ? 8 : 4;
        const std::uint64_t n = read_uint(width);
        const std::uint8_t* p = read_bytes(n);
        std::string s(reinterpret_cast<const char*>(p), n);
        stack_.push_back((op == 'T' || op == 'U') ? PickleValue::from_string(std::move(s))
                                                  : PickleValue::from_bytes(std::move(s)));
        break;
      }
      case 'S': {  // STRING: a quoted python 2 string literal
        std::string line = read_line();
        if (line.size() < 2 || (line.front() != '\'' && line.front() != '"') || line.back() != line.front()) {
          fail("bad STRING literal");
        }
        std::string out;
        for (std::size_t i = 1; i + 1 < line.size(); ++i) {
          if (line[i] != '\\') { out.push_back(line[i]); continue; }
          if (++i >= line.size() - 1) fail("bad escape in STRING");
          const char c = line[i];
          if (c == 'n') out.push_back('\n');
          else if (c == 't') out.push_back('\t');
          else if (c == 'r') out.push_back('\r');
          else if (c == '\\' || c == '\'' || c == '"') out.push_back(c);
          else if (c == 'x' && i + 2 < line.size() - 1) {
            out.push_back(static_cast<char>(std::stoi(line.substr(i + 1, 2), nullptr, 16)));
            i += 2;
          } else fail("unsupported escape in STRING");
        }
        stack_.push_back(PickleValue::from_string(std::move(out)));
        break;
      }
      case ')': stack_.push_back(PickleValue::tuple()); break;  // EMPTY_TUPLE
      case 't': stack_.push_back(PickleValue::tuple(pop_mark())); break;
      case 0x85: { PickleValue a = pop(); stack_.push_back(PickleValue::tuple({a})); break; }
      case 0x86: { PickleValue b = pop(), a = pop(); stack_.push_back(PickleValue::tuple({a, b})); break; }
      case 0x87: {
        PickleValue c = pop(), b = pop(), a = pop();
        stack_.push_back(PickleValue::tuple({a, b, c}));
        break;
      }
      case ']': stack_.push_back(PickleValue::list()); break;  // EMPTY_LIST
      case 'l': stack_.push_back(PickleValue::list(pop_mark())); break;
      case '}': stack_.push_back(PickleValue::dict()); break;  // EMPTY_DICT
      case 'd': {                                               // DICT
        auto items = pop_mark();
        if (items.size() % 2 != 0) fail("DICT with an odd number of items");
        PickleValue d = PickleValue::dict();
        for (std::size_t i = 0; i < items.size(); i += 2) d.mutable_dict().set(items[i], items[i + 1]);
        stack_.push_back(d);
        break;
      }
      case 0x8f: stack_.push_back(PickleValue::set()); break;  // EMPTY_SET
      case 0x91: stack_.push_back(PickleValue::set(pop_mark())); break;  // FROZENSET
      case 0x90: {  // ADDITEMS
        auto items = pop_mark();
        PickleValue& s = top();
        if (s.kind() != PickleValue::Kind::kSet) fail("ADDITEMS on " + s.describe());
        for (auto& v : items) s.mutable_items().push_back(std::move(v));
        break;
      }
      case 'a': case 'e': {  // APPEND, APPENDS
        std::vector<PickleValue> items;
        if (op == 'a') items.push_back(pop()); else items = pop_mark();
        PickleValue& list = top();
        if (list.kind() == PickleValue::Kind::kRefused) break;  // inert object: ignore
        if (list.kind() != PickleValue::Kind::kList) fail("APPEND on " + list.describe());
        for (auto& v : items) list.mutable_items().push_back(std::move(v));
        break;
      }
      case 's': case 'u': {  // SETITEM, SETITEMS
        std::vector<PickleValue> items;
        if (op == 's') {
          PickleValue v = pop();
          PickleValue k = pop();
          items = {k, v};
        } else {
          items = pop_mark();
        }
        if (items.size() % 2 != 0) fail("SETITEMS with an odd number of items");
        PickleValue& d = top();
        if (d.kind() == PickleValue::Kind::kRefused) break;  // inert object: ignore
        if (!d.is_dict()) fail("SETITEM on " + d.describe());
        for (std::size_t i = 0; i < items.size(); i += 2) {
          const auto k = items[i].kind();
          if (k == PickleValue::Kind::kList || k == PickleValue::Kind::kDict || k == PickleValue::Kind::kSet ||
              k == PickleValue::Kind::kTensor) {
            fail("unhashable dict key " + items[i].describe());
          }
          d.mutable_dict().set(std::move(items[i]), std::move(items[i + 1]));
        }
        break;
      }
      case 'p': {  // PUT (text)
        const std::string line = read_line();
        std::uint64_t idx;
        try { idx = std::stoull(line); } catch (const std::exception&) { fail("bad PUT index"); }
        memo_[idx] = top();
        break;
      }
      case 'q': memo_[read_uint(1)] = top(); break;
      case 'r': memo_[read_uint(4)] = top(); break;
      case 0x94: { const std::uint64_t idx = memo_.size(); memo_[idx] = top(); break; }  // MEMOIZE
      case 'g': case 'h': case 'j': {  // GET, BINGET, LONG_BINGET
        std::uint64_t idx;
        if (op == 'g') {
          const std::string line = read_line();
          try { idx = std::stoull(line); } catch (const std::exception&) { fail("bad GET index"); }
        } else {
          idx = read_uint(op == 'h' ? 1 : 4);
        }
        auto it = memo_.find(idx);
        if (it == memo_.end()) fail("memo entry " + std::to_string(idx) + " missing");
        stack_.push_back(it->second);
        break;
      }
      case 'c': {  // GLOBAL
        const std::string module = read_line();
        const std::string name = read_line();
        stack_.push_back(resolve_global(module, name));
        break;
      }
      case 0x93: {  // STACK_GLOBAL
        PickleValue name = pop();
        PickleValue module = pop();
        if (!name.is_string() || !module.is_string()) fail("STACK_GLOBAL of non-strings");
        stack_.push_back(resolve_global(module.as_string(), name.as_string()));
        break;
      }
      case 'i': {  // INST: module, name lines, arguments since MARK
        const std::string module = read_line();
        const std::string name = read_line();
        PickleValue cls = resolve_global(module, name);
        stack_.push_back(call(cls, pop_mark()));
        break;
      }
      case 'o': {  // OBJ: class and arguments since MARK
        auto items = pop_mark();
        if (items.empty()) fail("OBJ without a class");
        PickleValue cls = items.front();
        items.erase(items.begin());
        stack_.push_back(call(cls, std::move(items)));
        break;
      }
      case 'R': case 0x81: {  // REDUCE, NEWOBJ
        PickleValue args = pop();
        PickleValue callable = pop();
        if (args.kind() != PickleValue::Kind::kTuple) fail("call arguments are " + args.describe() + ", not a tuple");
        stack_.push_back(call(callable, args.items()));
        break;
      }
      case 0x92: {  // NEWOBJ_EX
        PickleValue kwargs = pop();
        PickleValue args = pop();
        PickleValue cls = pop();
        if (args.kind() != PickleValue::Kind::kTuple) fail("NEWOBJ_EX arguments are not a tuple");
        if (!kwargs.is_dict() || kwargs.as_dict().size() != 0) {
          if (cls.kind() != PickleValue::Kind::kRefused) fail("keyword arguments for " + cls.describe());
        }
        stack_.push_back(call(cls, args.items()));
        break;
      }
      case 'b': {  // BUILD
        PickleValue state = pop();
        build(top(), state);
        break;
      }
      case 'Q': {  // BINPERSID
        PickleValue pid = pop();
        if (!loader_) fail("persistent id without a loader");
        try {
          stack_.push_back(loader_(pid));
        } catch (const FormatError& e) {
          const std::string what = e.what();
          if (starts_with(what, name_)) throw;
          fail(what);
        }
        break;
      }
      case 'P': {  // PERSID (text)
        PickleValue pid = PickleValue::from_string(read_line());
        if (!loader_) fail("persistent id without a loader");
        stack_.push_back(loader_(pid));
        break;
      }
      case 0x82: case 0x83: case 0x84: fail("pickle extension registry (EXT opcodes) is not supported");
      case 0x97: case 0x98: fail("out-of-band pickle buffers are not supported");
      default: {
        char hex[8];
        std::snprintf(hex, sizeof(hex), "0x%02x", op);
        fail(std::string("unknown pickle opcode ") + hex);
      }
    }
  }
}

}  // namespace sdtrain
