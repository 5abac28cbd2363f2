#pragma once
/// RFC 4180 CSV and JSON-lines metadata tables, as the image_folder dataset reads them.
#include <string>
#include <vector>

namespace sdtrain {

/// A table of string cells: a header and rows, each row remembering its line in the file.
struct MetadataTable {
  std::vector<std::string> columns;
  struct Row {
    std::vector<std::string> cells;  ///< one per column; "" where the file had no value
    int line = 0;                    ///< 1-based line where the record starts
  };
  std::vector<Row> rows;

  /// Index of `name` in columns, or -1.
  int column(const std::string& name) const;
};

/// Parses RFC 4180 CSV: the first record is the header; quoted fields may contain commas, newlines
/// and "" for a quote; CRLF, LF or CR line ends; a leading UTF-8 BOM is skipped; blank lines are
/// skipped; rows with fewer cells than the header are padded with "". Throws ConfigError
/// "metadata_file: <path> line N: ..." for an unterminated quote, text after a closing quote, more
/// cells than the header, or a missing header.
MetadataTable parse_csv_table(const std::string& text, const std::string& path);

/// Parses JSON lines: one object per non-blank line; columns are the keys in order of first
/// appearance; string values are taken as they are, null as "", other values as their JSON text.
/// Throws ConfigError "metadata_file: <path> line N: ..." for invalid JSON or a non-object line.
MetadataTable parse_jsonl_table(const std::string& text, const std::string& path);

}  // namespace sdtrain
