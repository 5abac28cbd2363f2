#include "framework/io/pickle_value.h"

#include <sstream>
#include <unordered_set>

#include "sdtrain/errors.h"

namespace sdtrain {
namespace {

std::shared_ptr<PickleValue::Node> make_node() { return std::make_shared<PickleValue::Node>(); }

const char* kind_name(PickleValue::Kind kind) {
  switch (kind) {
    case PickleValue::Kind::kNone: return "None";
    case PickleValue::Kind::kBool: return "bool";
    case PickleValue::Kind::kInt: return "int";
    case PickleValue::Kind::kFloat: return "float";
    case PickleValue::Kind::kString: return "str";
    case PickleValue::Kind::kBytes: return "bytes";
    case PickleValue::Kind::kList: return "list";
    case PickleValue::Kind::kTuple: return "tuple";
    case PickleValue::Kind::kSet: return "set";
    case PickleValue::Kind::kDict: return "dict";
    case PickleValue::Kind::kTensor: return "tensor";
    case PickleValue::Kind::kGlobal: return "global";
    case PickleValue::Kind::kRefused: return "refused object";
  }
  return "?";
}

}  // namespace

void PickleDict::set(PickleValue key, PickleValue value) {
  if (key.kind() == PickleValue::Kind::kString) {
    auto it = string_index_.find(key.as_string());
    if (it != string_index_.end()) {
      items_[it->second].second = std::move(value);
      return;
    }
    string_index_.emplace(key.as_string(), items_.size());
  } else {
    for (auto& item : items_) {
      if (item.first.key_equals(key)) {
        item.second = std::move(value);
        return;
      }
    }
  }
  items_.emplace_back(std::move(key), std::move(value));
}

const PickleValue* PickleDict::find(const std::string& key) const {
  auto it = string_index_.find(key);
  return it == string_index_.end() ? nullptr : &items_[it->second].second;
}

const PickleValue* PickleDict::find(const PickleValue& key) const {
  if (key.kind() == PickleValue::Kind::kString) return find(key.as_string());
  for (const auto& item : items_) {
    if (item.first.key_equals(key)) return &item.second;
  }
  return nullptr;
}

PickleValue PickleValue::from_bool(bool v) {
  PickleValue p;
  p.kind_ = Kind::kBool;
  p.bool_ = v;
  return p;
}

PickleValue PickleValue::from_int(std::int64_t v) {
  PickleValue p;
  p.kind_ = Kind::kInt;
  p.int_ = v;
  return p;
}

PickleValue PickleValue::from_float(double v) {
  PickleValue p;
  p.kind_ = Kind::kFloat;
  p.float_ = v;
  return p;
}

PickleValue PickleValue::from_string(std::string v) {
  PickleValue p;
  p.kind_ = Kind::kString;
  p.node_ = make_node();
  p.node_->text = std::move(v);
  return p;
}

PickleValue PickleValue::from_bytes(std::string v) {
  PickleValue p = from_string(std::move(v));
  p.kind_ = Kind::kBytes;
  return p;
}

PickleValue PickleValue::list(std::vector<PickleValue> items) {
  PickleValue p;
  p.kind_ = Kind::kList;
  p.node_ = make_node();
  p.node_->items = std::move(items);
  return p;
}

PickleValue PickleValue::tuple(std::vector<PickleValue> items) {
  PickleValue p = list(std::move(items));
  p.kind_ = Kind::kTuple;
  return p;
}

PickleValue PickleValue::set(std::vector<PickleValue> items) {
  PickleValue p = list(std::move(items));
  p.kind_ = Kind::kSet;
  return p;
}

PickleValue PickleValue::dict() {
  PickleValue p;
  p.kind_ = Kind::kDict;
  p.node_ = make_node();
  return p;
}

PickleValue PickleValue::from_tensor(torch::Tensor t) {
  PickleValue p;
  p.kind_ = Kind::kTensor;
  p.node_ = make_node();
  p.node_->tensor = std::move(t);
  return p;
}

PickleValue PickleValue::global(std::string qualified_name) {
  PickleValue p = from_string(std::move(qualified_name));
  p.kind_ = Kind::kGlobal;
  return p;
}

PickleValue PickleValue::refused(std::string qualified_name, bool called, std::vector<PickleValue> args,
                                 PickleValue state) {
  PickleValue p = from_string(std::move(qualified_name));
  p.kind_ = Kind::kRefused;
  p.node_->called = called;
  p.node_->items = std::move(args);
  p.node_->refused_state = std::make_unique<PickleValue>(std::move(state));
  return p;
}

PickleValue PickleValue::refused(std::string qualified_name) {
  return refused(std::move(qualified_name), false, {}, PickleValue());
}

namespace {
[[noreturn]] void mismatch(const PickleValue& v, const char* wanted) {
  if (v.kind() == PickleValue::Kind::kRefused) {
    throw FormatError(std::string("expected ") + wanted + " but found an object of the refused global '" +
                      v.global_name() + "' (never executed)");
  }
  throw FormatError(std::string("expected ") + wanted + " but found " + v.describe());
}
}  // namespace

bool PickleValue::as_bool() const {
  if (kind_ != Kind::kBool) mismatch(*this, "bool");
  return bool_;
}

std::int64_t PickleValue::as_int() const {
  if (kind_ == Kind::kBool) return bool_ ? 1 : 0;
  if (kind_ != Kind::kInt) mismatch(*this, "int");
  return int_;
}

double PickleValue::as_float() const {
  if (kind_ == Kind::kInt) return static_cast<double>(int_);
  if (kind_ != Kind::kFloat) mismatch(*this, "float");
  return float_;
}

const std::string& PickleValue::as_string() const {
  if (kind_ != Kind::kString) mismatch(*this, "str");
  return node_->text;
}

const std::string& PickleValue::as_bytes() const {
  if (kind_ != Kind::kBytes) mismatch(*this, "bytes");
  return node_->text;
}

const std::vector<PickleValue>& PickleValue::items() const {
  if (!is_sequence()) mismatch(*this, "list, tuple or set");
  return node_->items;
}

std::vector<PickleValue>& PickleValue::mutable_items() {
  if (!is_sequence()) mismatch(*this, "list, tuple or set");
  return node_->items;
}

const PickleDict& PickleValue::as_dict() const {
  if (kind_ != Kind::kDict) mismatch(*this, "dict");
  return node_->dict;
}

PickleDict& PickleValue::mutable_dict() {
  if (kind_ != Kind::kDict) mismatch(*this, "dict");
  return node_->dict;
}

const torch::Tensor& PickleValue::as_tensor() const {
  if (kind_ != Kind::kTensor) mismatch(*this, "tensor");
  return node_->tensor;
}

const std::string& PickleValue::global_name() const {
  if (kind_ != Kind::kGlobal && kind_ != Kind::kRefused) mismatch(*this, "global");
  return node_->text;
}

bool PickleValue::refused_called() const {
  if (kind_ != Kind::kRefused) mismatch(*this, "refused object");
  return node_->called;
}

const PickleValue& PickleValue::refused_state() const {
  if (kind_ != Kind::kRefused) mismatch(*this, "refused object");
  return *node_->refused_state;
}

bool PickleValue::key_equals(const PickleValue& other) const {
  const bool numeric = (kind_ == Kind::kInt || kind_ == Kind::kBool || kind_ == Kind::kFloat);
  const bool other_numeric = (other.kind_ == Kind::kInt || other.kind_ == Kind::kBool || other.kind_ == Kind::kFloat);
  if (numeric && other_numeric) {
    // As in Python, True == 1 == 1.0: a bool compares by its int value, also against a float.
    auto number = [](const PickleValue& v) { return v.kind_ == Kind::kFloat ? v.float_ : static_cast<double>(v.as_int()); };
    if (kind_ == Kind::kFloat || other.kind_ == Kind::kFloat) return number(*this) == number(other);
    return as_int() == other.as_int();
  }
  if (kind_ != other.kind_) return false;
  switch (kind_) {
    case Kind::kNone: return true;
    case Kind::kString: case Kind::kBytes: case Kind::kGlobal: case Kind::kRefused:
      // Placeholders: the same object, or the same uncalled global (a class used as a key).
      if (node_ == other.node_) return true;
      if (kind_ == Kind::kRefused && (node_->called || other.node_->called)) return false;
      return node_->text == other.node_->text;
    case Kind::kTuple: {
      if (node_->items.size() != other.node_->items.size()) return false;
      for (std::size_t i = 0; i < node_->items.size(); ++i) {
        if (!node_->items[i].key_equals(other.node_->items[i])) return false;
      }
      return true;
    }
    default:
      return node_ == other.node_;  // identity for unhashable values
  }
}

std::string PickleValue::describe() const {
  if (kind_ == Kind::kRefused || kind_ == Kind::kGlobal) {
    return std::string(kind_name(kind_)) + " '" + node_->text + "'";
  }
  return kind_name(kind_);
}

std::string PickleValue::repr(int depth) const {
  std::ostringstream out;
  switch (kind_) {
    case Kind::kNone: return "None";
    case Kind::kBool: return bool_ ? "True" : "False";
    case Kind::kInt: return std::to_string(int_);
    case Kind::kFloat: out << float_; return out.str();
    case Kind::kString: return "'" + node_->text + "'";
    case Kind::kBytes: return "b<" + std::to_string(node_->text.size()) + " bytes>";
    case Kind::kGlobal: return node_->text;
    case Kind::kRefused: return "<refused " + node_->text + (node_->called ? "(...)" : "") + ">";
    case Kind::kTensor: {
      out << "tensor(" << node_->tensor.sizes() << ", " << node_->tensor.dtype() << ")";
      return out.str();
    }
    case Kind::kList: case Kind::kTuple: case Kind::kSet: {
      const char* open = kind_ == Kind::kList ? "[" : kind_ == Kind::kTuple ? "(" : "{";
      const char* close = kind_ == Kind::kList ? "]" : kind_ == Kind::kTuple ? ")" : "}";
      if (depth <= 0) return std::string(open) + "..." + close;
      out << open;
      for (std::size_t i = 0; i < node_->items.size() && i < 8; ++i) out << (i ? ", " : "") << node_->items[i].repr(depth - 1);
      if (node_->items.size() > 8) out << ", ...";
      out << close;
      return out.str();
    }
    case Kind::kDict: {
      if (depth <= 0) return "{...}";
      out << "{";
      std::size_t i = 0;
      for (const auto& [k, v] : node_->dict.items()) {
        if (i == 8) { out << ", ..."; break; }
        out << (i++ ? ", " : "") << k.repr(0) << ": " << v.repr(depth - 1);
      }
      out << "}";
      return out.str();
    }
  }
  return "?";
}

namespace {
void push_children(PickleValue::Node& node, std::vector<PickleValue*>& todo) {
  for (auto& v : node.items) todo.push_back(&v);
  for (auto& kv : node.dict.mutable_items()) {
    todo.push_back(&kv.first);
    todo.push_back(&kv.second);
  }
  if (node.refused_state) todo.push_back(node.refused_state.get());
}
}  // namespace

std::vector<std::shared_ptr<PickleValue::Node>> reachable_nodes(const PickleValue& root,
                                                               const std::unordered_set<const PickleValue::Node*>& exclude) {
  std::vector<std::shared_ptr<PickleValue::Node>> out;
  std::unordered_set<const PickleValue::Node*> seen;
  std::vector<PickleValue*> todo;
  PickleValue copy = root;
  todo.push_back(&copy);
  while (!todo.empty()) {
    PickleValue* v = todo.back();
    todo.pop_back();
    const auto& node = v->node();
    if (!node || exclude.count(node.get()) != 0 || !seen.insert(node.get()).second) continue;
    out.push_back(node);
    push_children(*node, todo);
  }
  return out;
}

void dismantle(std::vector<PickleValue>& roots, const std::unordered_set<const PickleValue::Node*>& exclude) {
  std::vector<std::shared_ptr<PickleValue::Node>> nodes;
  for (const auto& root : roots) {
    auto more = reachable_nodes(root, exclude);
    nodes.insert(nodes.end(), more.begin(), more.end());
  }
  roots.clear();
  // Move every child out before any node is released: destroying the flat list then frees
  // nodes whose containers are already empty, so nothing recurses.
  std::vector<PickleValue> graveyard;
  for (auto& node : nodes) {
    for (auto& v : node->items) graveyard.push_back(std::move(v));
    node->items.clear();
    for (auto& kv : node->dict.mutable_items()) {
      graveyard.push_back(std::move(kv.first));
      graveyard.push_back(std::move(kv.second));
    }
    node->dict = PickleDict();
    if (node->refused_state) graveyard.push_back(std::move(*node->refused_state));
    node->refused_state.reset();
  }
  graveyard.clear();
  nodes.clear();
}

}  // namespace sdtrain
