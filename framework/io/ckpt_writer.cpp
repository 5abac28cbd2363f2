// save_ckpt: PickleValue -> c10::IValue, pickled by torch::jit::Pickler and zipped by
// caffe2::serialize::PyTorchStreamWriter into an AtomicFile. Using LibTorch's own pickler and zip
// writer (the pair torch.save is built on) keeps the file format torch's business, not ours.
#include "framework/io/ckpt_writer.h"

#include <caffe2/serialize/inline_container.h>
#include <torch/csrc/jit/serialization/pickler.h>

#include <exception>
#include <unordered_map>

#include "framework/io/atomic_file.h"
#include "framework/io/torch_pickle_types.h"
#include "sdtrain/errors.h"

namespace sdtrain {
namespace {

constexpr int kMaxDepth = 1000;

/// Converts PickleValues into the IValues the pickler writes as plain Python data. Lists and dicts
/// are built with element type Any: the pickler writes typed lists through
/// torch.jit._pickle.build_intlist & co., which torch.load(weights_only=True) refuses.
class IValueBuilder {
 public:
  explicit IValueBuilder(const std::string& path) : path_(path) {}

  c10::IValue convert(const PickleValue& v, int depth) {
    if (depth > kMaxDepth) fail("value nested deeper than " + std::to_string(kMaxDepth) + " (or cyclic)");
    using K = PickleValue::Kind;
    switch (v.kind()) {
      case K::kNone: return c10::IValue();
      case K::kBool: return c10::IValue(v.as_bool());
      case K::kInt: return c10::IValue(v.as_int());
      case K::kFloat: return c10::IValue(v.as_float());
      case K::kString: return c10::IValue(v.as_string());
      case K::kList: {
        c10::impl::GenericList list(c10::AnyType::get());
        list.reserve(v.items().size());
        for (const auto& item : v.items()) list.push_back(convert(item, depth + 1));
        return c10::IValue(std::move(list));
      }
      case K::kTuple: {
        std::vector<c10::IValue> items;
        items.reserve(v.items().size());
        for (const auto& item : v.items()) items.push_back(convert(item, depth + 1));
        return c10::IValue(c10::ivalue::Tuple::create(std::move(items)));
      }
      case K::kDict: {
        c10::impl::GenericDict dict(c10::AnyType::get(), c10::AnyType::get());
        for (const auto& [key, value] : v.as_dict().items()) {
          // c10::Dict hashes only these key kinds (no None or tuple keys).
          const K k = key.kind();
          if (k != K::kBool && k != K::kInt && k != K::kFloat && k != K::kString) {
            fail("cannot save a dict key of kind " + key.describe() + " (keys must be bool, int, float or str)");
          }
          dict.insert_or_assign(convert(key, depth + 1), convert(value, depth + 1));
        }
        return c10::IValue(std::move(dict));
      }
      case K::kTensor: return c10::IValue(writable_tensor(v.as_tensor()));
      case K::kBytes:
      case K::kSet:
      case K::kGlobal:
        fail("cannot save " + v.describe() + ": LibTorch's pickler writes no sets, bytes or bare globals");
      case K::kRefused:
        fail("cannot save an object of the refused global '" + v.global_name() + "'");
    }
    fail("cannot save " + v.describe());
  }

 private:
  [[noreturn]] void fail(const std::string& what) const { throw FormatError(path_ + ": " + what); }

  /// `tensor` as the pickler should see it: detached, on the CPU, with every view of one
  /// original storage viewing one CPU storage (the pickler writes each storage once by identity).
  torch::Tensor writable_tensor(const torch::Tensor& tensor) {
    if (!tensor.defined()) fail("cannot save an undefined tensor");
    if (tensor.layout() != torch::kStrided || tensor.is_quantized()) fail("cannot save a sparse or quantized tensor");
    // Conjugate/negative bits would be written as metadata that load_ckpt does not apply.
    torch::Tensor t = tensor.detach().resolve_conj().resolve_neg();
    dtype_storage_type(t.scalar_type(), path_);  // throws for dtypes torch.load has no storage type for
    const c10::Storage& storage = t.storage();
    const c10::StorageImpl* id = storage.unsafeGetStorageImpl();
    const auto [seen, first] = storage_dtypes_.emplace(id, t.scalar_type());
    if (!first && seen->second != t.scalar_type()) {
      fail("two tensors view one storage with different dtypes (torch.save refuses this too)");
    }
    if (storage.nbytes() % t.element_size() != 0) fail("a tensor storage is not a whole number of elements");
    if (t.device().is_cpu()) return t;
    auto copy = cpu_storages_.find(id);
    if (copy == cpu_storages_.end()) {
      const auto numel = static_cast<std::int64_t>(storage.nbytes() / t.element_size());
      const torch::Tensor whole = torch::empty({0}, t.options()).set_(storage, 0, {numel}, {1});
      copy = cpu_storages_.emplace(id, whole.to(torch::kCPU)).first;
    }
    const torch::Tensor& cpu = copy->second;
    return torch::empty({0}, cpu.options()).set_(cpu.storage(), t.storage_offset(), t.sizes(), t.strides());
  }

  const std::string& path_;
  std::unordered_map<const c10::StorageImpl*, torch::Dtype> storage_dtypes_;
  std::unordered_map<const c10::StorageImpl*, torch::Tensor> cpu_storages_;
};

/// Zips `pickle` and the storages of `tensors` (record data/<i> for the i-th) into `file`.
void write_archive(AtomicFile& file, const std::string& pickle, const std::vector<at::Tensor>& tensors) {
  // The writer calls this from inside miniz, C code no exception may cross: a write error is kept,
  // later bytes are dropped (reporting them written keeps miniz quiet) and the error is rethrown
  // between records.
  std::exception_ptr failure;
  caffe2::serialize::PyTorchStreamWriter zip([&](const void* data, std::size_t size) -> std::size_t {
    if (!failure) {
      try {
        file.write(data, size);
      } catch (...) {
        failure = std::current_exception();
      }
    }
    return size;
  });
  auto record = [&](const std::string& name, const void* data, std::size_t size) {
    zip.writeRecord(name, data, size);
    if (failure) std::rethrow_exception(failure);
  };
  auto text = [&](const std::string& name, const std::string& value) { record(name, value.data(), value.size()); };
  try {
    text("data.pkl", pickle);
    text(".format_version", "1");
    text(".storage_alignment", "64");
    text("byteorder", "little");
    for (std::size_t i = 0; i < tensors.size(); ++i) {
      const c10::Storage& storage = tensors[i].storage();
      record("data/" + std::to_string(i), storage.data(), storage.nbytes());
    }
    zip.writeEndOfFile();  // version, .data/serialization_id, central directory
    if (failure) std::rethrow_exception(failure);
  } catch (...) {
    // Finish here, where a second error can be swallowed: the writer's destructor would finish
    // the archive itself, and an exception from a destructor terminates the process.
    try {
      if (!zip.finalized()) zip.writeEndOfFile();
    } catch (...) {
    }
    throw;
  }
}

}  // namespace

void save_ckpt(const std::string& path, const PickleValue& state, bool overwrite) {
  try {
    IValueBuilder builder(path);
    const c10::IValue root = builder.convert(state, 0);
    std::string pickle;
    torch::jit::Pickler pickler([&](const char* data, std::size_t size) { pickle.append(data, size); },
                                /*tensor_table=*/nullptr, /*type_renamer=*/nullptr,
                                /*memoized_class_types=*/nullptr, /*get_tensor_id=*/nullptr,
                                /*tag_aggregates=*/false);  // type tags are globals torch.load refuses
    pickler.protocol();
    pickler.pushIValue(root);
    pickler.stop();
    AtomicFile file(path, overwrite);
    write_archive(file, pickle, pickler.tensorData());
    file.commit();
  } catch (const c10::Error& e) {
    throw FormatError(path + ": cannot write the checkpoint: " + e.what_without_backtrace());
  }
}

void save_ckpt_state_dict(const std::string& path, const std::vector<std::pair<std::string, torch::Tensor>>& tensors,
                          const std::vector<std::pair<std::string, PickleValue>>& extras, bool overwrite) {
  PickleValue state_dict = PickleValue::dict();
  for (const auto& [name, t] : tensors) state_dict.mutable_dict().set(PickleValue::from_string(name), PickleValue::from_tensor(t));
  PickleValue root = PickleValue::dict();
  for (const auto& [name, v] : extras) root.mutable_dict().set(PickleValue::from_string(name), v);
  root.mutable_dict().set(PickleValue::from_string("state_dict"), state_dict);
  save_ckpt(path, root, overwrite);
}

}  // namespace sdtrain
