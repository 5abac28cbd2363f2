#include "plugins/datasets/csv_table.h"

#include <nlohmann/json.hpp>

#include "sdtrain/errors.h"

namespace sdtrain {
namespace {

[[noreturn]] void table_error(const std::string& path, int line, const std::string& what) {
  throw ConfigError("metadata_file: " + path + " line " + std::to_string(line) + ": " + what);
}

}  // namespace

int MetadataTable::column(const std::string& name) const {
  for (std::size_t i = 0; i < columns.size(); ++i) {
    if (columns[i] == name) return static_cast<int>(i);
  }
  return -1;
}

MetadataTable parse_csv_table(const std::string& text, const std::string& path) {
  std::size_t i = 0;
  const std::size_t n = text.size();
  if (text.compare(0, 3, "\xEF\xBB\xBF") == 0) i = 3;
  int line = 1;
  std::vector<std::vector<std::string>> records;
  std::vector<int> record_lines;
  while (i < n) {
    std::vector<std::string> fields;
    const int record_line = line;
    bool blank = true;  // a record with one empty unquoted field is a blank line
    for (;;) {
      std::string field;
      bool quoted = false;
      if (i < n && text[i] == '"') {
        quoted = true;
        blank = false;
        const int quote_line = line;
        ++i;
        for (;;) {
          if (i >= n) table_error(path, quote_line, "unterminated quoted field");
          const char c = text[i];
          if (c == '"') {
            if (i + 1 < n && text[i + 1] == '"') {
              field += '"';
              i += 2;
              continue;
            }
            ++i;
            break;
          }
          if (c == '\n' || (c == '\r' && !(i + 1 < n && text[i + 1] == '\n'))) ++line;
          field += c;
          ++i;
        }
      }
      while (i < n && text[i] != ',' && text[i] != '\n' && text[i] != '\r') {
        if (quoted) table_error(path, line, "unexpected text after a closing quote (quotes inside a field must be doubled)");
        if (text[i] == '"') table_error(path, line, "quote inside an unquoted field (quote the field and double the quote)");
        field += text[i++];
      }
      if (!field.empty()) blank = false;
      fields.push_back(std::move(field));
      if (i < n && text[i] == ',') {
        blank = false;
        ++i;
        continue;
      }
      // End of record.
      if (i < n && text[i] == '\r') ++i;
      if (i < n && text[i] == '\n') ++i;
      ++line;
      break;
    }
    if (blank) continue;
    records.push_back(std::move(fields));
    record_lines.push_back(record_line);
  }
  if (records.empty()) throw ConfigError("metadata_file: " + path + " is empty (expected a header line)");
  MetadataTable table;
  table.columns = std::move(records.front());
  for (std::size_t r = 1; r < records.size(); ++r) {
    if (records[r].size() > table.columns.size()) {
      table_error(path, record_lines[r], std::to_string(records[r].size()) + " fields but the header has " +
                                             std::to_string(table.columns.size()));
    }
    records[r].resize(table.columns.size());
    table.rows.push_back({std::move(records[r]), record_lines[r]});
  }
  return table;
}

MetadataTable parse_jsonl_table(const std::string& text, const std::string& path) {
  MetadataTable table;
  std::vector<nlohmann::ordered_json> objects;
  std::vector<int> lines;
  std::size_t start = 0;
  int line = 0;
  if (text.compare(0, 3, "\xEF\xBB\xBF") == 0) start = 3;
  while (start < text.size()) {
    std::size_t end = text.find('\n', start);
    if (end == std::string::npos) end = text.size();
    ++line;
    const std::string content = text.substr(start, end - start);
    start = end + 1;
    if (content.find_first_not_of(" \t\r") == std::string::npos) continue;
    nlohmann::ordered_json object;
    try {
      object = nlohmann::ordered_json::parse(content);
    } catch (const nlohmann::ordered_json::exception& error) {
      table_error(path, line, std::string("invalid JSON: ") + error.what());
    }
    if (!object.is_object()) table_error(path, line, "expected a JSON object");
    for (auto it = object.begin(); it != object.end(); ++it) {
      if (table.column(it.key()) < 0) table.columns.push_back(it.key());
    }
    objects.push_back(std::move(object));
    lines.push_back(line);
  }
  for (std::size_t r = 0; r < objects.size(); ++r) {
    MetadataTable::Row row;
    row.line = lines[r];
    row.cells.resize(table.columns.size());
    for (auto it = objects[r].begin(); it != objects[r].end(); ++it) {
      std::string& cell = row.cells[table.column(it.key())];
      if (it->is_string()) cell = it->get<std::string>();
      else if (!it->is_null()) cell = it->dump();
    }
    table.rows.push_back(std::move(row));
  }
  return table;
}

}  // namespace sdtrain
