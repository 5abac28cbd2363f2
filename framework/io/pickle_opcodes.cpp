// The restricted unpickler's opcode interpreter: one case per pickle opcode of protocols 0-5.
// Globals are resolved and called only through resolve_global()/call() (pickle_globals.cpp).
#include <cctype>
#include <cstdio>
#include <cstring>
#include <stdexcept>

#include "framework/io/pickle_reader.h"
#include "framework/util/strings.h"
#include "sdtrain/errors.h"

namespace sdtrain {

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
          else if (c == 'x' && i + 2 < line.size() - 1 && std::isxdigit(static_cast<unsigned char>(line[i + 1])) &&
                   std::isxdigit(static_cast<unsigned char>(line[i + 2]))) {
            // Two hex digits checked first: stoi would throw std::invalid_argument on "\xzz".
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