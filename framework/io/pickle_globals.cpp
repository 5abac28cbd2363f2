// The restricted unpickler's globals: the allow-list, the tolerated data-only namespaces, and what
// a "call" of an allowed global means (tensor rebuilding, OrderedDict, set, bytes, torch.Size).
// Nothing here imports or runs anything named in a pickle.
#include <optional>
#include <unordered_set>

#include "framework/io/pickle_reader.h"
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

}  // namespace sdtrain
