#pragma once
/// A restricted unpickler: it decodes Python pickles (protocols 0-5) into PickleValues and never
/// imports or calls anything. Only an allow-list of globals has a meaning (tensor rebuilding,
/// storage types, OrderedDict, set, bytes via _codecs.encode, torch dtypes); every other global
/// is refused by name. Implemented in pickle_reader.cpp (input, stack, result checks),
/// pickle_opcodes.cpp (the opcodes) and pickle_globals.cpp (the allow-list and its calls).
#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <unordered_map>
#include <vector>

#include "framework/io/pickle_value.h"

namespace sdtrain {

/// What to do with a global outside the allow-list.
enum class GlobalPolicy {
  /// Throw FormatError naming the global (the default, like torch.load(weights_only=True)).
  kStrict,
  /// Globals from the data-only namespaces in PickleReaderOptions::tolerated become inert
  /// placeholders (PickleValue::Kind::kRefused), never called, so the rest of the pickle still
  /// loads; every other global is still refused by name.
  kTolerateKnownData,
};

struct PickleReaderOptions {
  GlobalPolicy policy = GlobalPolicy::kStrict;
  /// Qualified-name prefixes tolerated under kTolerateKnownData ("pathlib." tolerates every
  /// pathlib global; an entry without a trailing '.' must match exactly). Defaults: the classes
  /// Lightning and common training scripts leave in checkpoints (see default_tolerated_globals).
  std::vector<std::string> tolerated;
  /// Deepest container nesting accepted.
  int max_depth = 1000;
};

/// The default tolerated prefixes: pathlib., argparse.Namespace, omegaconf., pytorch_lightning.,
/// lightning., lightning_fabric., numpy scalars/dtypes/arrays, datetime., typing.
std::vector<std::string> default_tolerated_globals();

/// Turns a persistent id (the value given to BINPERSID/PERSID) into a value; for torch, a storage.
using PersistentLoader = std::function<PickleValue(const PickleValue& persistent_id)>;

/// Decodes one pickle. `name` ("file.ckpt:archive/data.pkl") prefixes every error message.
/// Errors (all FormatError): truncated input, unknown or unsupported opcodes (EXT*, out-of-band
/// buffers), stack underflow, bad memo references, refused globals ("refused global
/// 'posix.system' (os.system) in <name> at byte N"), calls of allowed globals with bad arguments,
/// tensor views outside their storage, structures that are cyclic or nested deeper than
/// max_depth. Hostile input never crashes the reader or exhausts its stack.
class PickleReader {
 public:
  PickleReader(const std::uint8_t* data, std::size_t size, std::string name, PersistentLoader loader,
               PickleReaderOptions options = {});

  /// Decodes the whole pickle and returns its value.
  PickleValue load();
  /// Globals that became placeholders under kTolerateKnownData (each once, in order).
  const std::vector<std::string>& tolerated_globals_seen() const { return tolerated_seen_; }

 private:
  PickleValue run();
  PickleValue resolve_global(const std::string& module, const std::string& name);
  PickleValue call(const PickleValue& callable, std::vector<PickleValue> args);
  void build(PickleValue& target, const PickleValue& state);
  [[noreturn]] void fail(const std::string& what) const;

  std::uint8_t read_byte();
  const std::uint8_t* read_bytes(std::uint64_t n);
  std::uint64_t read_uint(int n);
  std::string read_line();
  PickleValue pop();
  PickleValue& top();
  std::vector<PickleValue> pop_mark();

  const std::uint8_t* data_;
  std::size_t size_;
  std::size_t pos_ = 0;
  std::size_t opcode_pos_ = 0;
  std::string name_;
  PersistentLoader loader_;
  PickleReaderOptions options_;
  std::vector<PickleValue> stack_;
  std::vector<std::size_t> marks_;
  std::unordered_map<std::uint64_t, PickleValue> memo_;
  std::vector<std::string> tolerated_seen_;
};

}  // namespace sdtrain
