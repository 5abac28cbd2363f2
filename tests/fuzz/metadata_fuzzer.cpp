// The image_folder's metadata tables: the same bytes as CSV and as JSON lines. Bad input must end
// in ConfigError; a parsed table has as many cells per row as columns.
#include <string>

#include "plugins/datasets/csv_table.h"
#include "sdtrain/errors.h"
#include "tests/fuzz/fuzz_target.h"

namespace {
void check(const sdtrain::MetadataTable& table) {
  for (const auto& row : table.rows) {
    if (row.cells.size() != table.columns.size()) __builtin_trap();
  }
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  try {
    check(sdtrain::parse_csv_table(text, "fuzz.csv"));
  } catch (const sdtrain::ConfigError&) {
  }
  try {
    check(sdtrain::parse_jsonl_table(text, "fuzz.jsonl"));
  } catch (const sdtrain::ConfigError&) {
  }
  return 0;
}
