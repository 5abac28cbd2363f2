#pragma once
/// The values a restricted unpickler can produce: Python's plain data, tensors, and inert
/// placeholders for globals it refused to run.
#include <torch/torch.h>

#include <cstdint>
#include <memory>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <vector>

namespace sdtrain {

class PickleDict;

/// A value from a pickle. Containers have reference semantics like Python objects: copying a
/// PickleValue shares its list or dict. Accessors throw FormatError on a kind mismatch (and
/// accessing a refused placeholder's value names its global).
class PickleValue {
 public:
  enum class Kind {
    kNone, kBool, kInt, kFloat, kString, kBytes,
    kList, kTuple, kSet,  ///< share the item vector representation
    kDict,
    kTensor,
    kGlobal,   ///< an allowed global that is not itself data (e.g. torch.float32, a storage type)
    kRefused,  ///< a placeholder for a global outside the allow-list; never called
  };

  PickleValue() = default;  ///< None
  static PickleValue none() { return PickleValue(); }
  static PickleValue from_bool(bool v);
  static PickleValue from_int(std::int64_t v);
  static PickleValue from_float(double v);
  static PickleValue from_string(std::string v);
  static PickleValue from_bytes(std::string v);
  static PickleValue list(std::vector<PickleValue> items = {});
  static PickleValue tuple(std::vector<PickleValue> items = {});
  static PickleValue set(std::vector<PickleValue> items = {});
  static PickleValue dict();
  static PickleValue from_tensor(torch::Tensor t);
  /// An allowed global named "module.name".
  static PickleValue global(std::string qualified_name);
  /// A placeholder for the refused global `qualified_name`; `called` when the pickle applied it
  /// (REDUCE/NEWOBJ/BUILD), with the arguments and state kept as inert data.
  static PickleValue refused(std::string qualified_name, bool called, std::vector<PickleValue> args,
                             PickleValue state);
  /// An uncalled placeholder (a class or function reference).
  static PickleValue refused(std::string qualified_name);

  Kind kind() const { return kind_; }
  bool is_none() const { return kind_ == Kind::kNone; }
  bool is_tensor() const { return kind_ == Kind::kTensor; }
  bool is_dict() const { return kind_ == Kind::kDict; }
  bool is_string() const { return kind_ == Kind::kString; }
  bool is_refused() const { return kind_ == Kind::kRefused; }
  /// True for list, tuple and set.
  bool is_sequence() const { return kind_ == Kind::kList || kind_ == Kind::kTuple || kind_ == Kind::kSet; }

  bool as_bool() const;
  std::int64_t as_int() const;  ///< also accepts a bool
  double as_float() const;      ///< also accepts an int
  const std::string& as_string() const;
  const std::string& as_bytes() const;
  const std::vector<PickleValue>& items() const;  ///< list, tuple or set
  std::vector<PickleValue>& mutable_items();
  const PickleDict& as_dict() const;
  PickleDict& mutable_dict();
  const torch::Tensor& as_tensor() const;
  /// "module.name" of a kGlobal or kRefused value.
  const std::string& global_name() const;
  /// Whether a refused placeholder was applied (its arguments and BUILD state are kept).
  bool refused_called() const;
  const PickleValue& refused_state() const;

  /// Python-like equality for hashable values (used for dict keys).
  bool key_equals(const PickleValue& other) const;
  /// Kind name for messages ("dict", "tensor", "refused object 'os.system'", ...).
  std::string describe() const;
  /// Short Python-like rendering for messages and debugging (nested values abbreviated).
  std::string repr(int depth = 2) const;

  /// Internal: the shared container node (for traversals that must not recurse unboundedly).
  struct Node;
  const std::shared_ptr<Node>& node() const { return node_; }

 private:
  Kind kind_ = Kind::kNone;
  bool bool_ = false;
  std::int64_t int_ = 0;
  double float_ = 0;
  std::shared_ptr<Node> node_;  // strings, containers, tensors, globals
};

/// An ordered dict (Python dicts keep insertion order). Keys are plain hashable values
/// (None, bool, int, float, str, bytes, tuples of those, or placeholders compared by name).
class PickleDict {
 public:
  /// Inserts or replaces (as Python's d[k] = v does).
  void set(PickleValue key, PickleValue value);
  /// The value for a string key, or nullptr.
  const PickleValue* find(const std::string& key) const;
  /// The value for any key, or nullptr.
  const PickleValue* find(const PickleValue& key) const;
  const std::vector<std::pair<PickleValue, PickleValue>>& items() const { return items_; }
  std::vector<std::pair<PickleValue, PickleValue>>& mutable_items() { return items_; }
  std::size_t size() const { return items_.size(); }

 private:
  std::vector<std::pair<PickleValue, PickleValue>> items_;
  std::unordered_map<std::string, std::size_t> string_index_;
};

/// Shared payload of non-scalar values.
struct PickleValue::Node {
  std::string text;                 ///< string, bytes or global name
  std::vector<PickleValue> items;   ///< list/tuple/set items, or a refused call's arguments
  PickleDict dict;
  torch::Tensor tensor;
  std::unique_ptr<PickleValue> refused_state;
  bool called = false;
};

/// Every distinct container reachable from `root` (each once, iteratively, cycle-safe), not
/// entering the nodes in `exclude`.
std::vector<std::shared_ptr<PickleValue::Node>> reachable_nodes(
    const PickleValue& root, const std::unordered_set<const PickleValue::Node*>& exclude = {});

/// Empties every container reachable from `roots` (but not those in `exclude`) without
/// recursion, so that destroying a hostile, deeply nested or cyclic structure cannot overflow
/// the stack or leak. Clears `roots`.
void dismantle(std::vector<PickleValue>& roots, const std::unordered_set<const PickleValue::Node*>& exclude = {});

}  // namespace sdtrain
