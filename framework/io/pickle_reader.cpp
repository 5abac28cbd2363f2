// The restricted unpickler's machinery: input reading, the value stack and marks, and load(),
// which runs the opcodes (pickle_opcodes.cpp) and checks the result for cycles and depth.
// Globals and calls: pickle_globals.cpp.
#include "framework/io/pickle_reader.h"

#include <cstring>
#include <unordered_set>

#include "framework/io/torch_pickle_types.h"
#include "framework/util/strings.h"
#include "sdtrain/errors.h"

namespace sdtrain {

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

}  // namespace sdtrain
