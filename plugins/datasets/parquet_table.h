#pragma once
/// Parquet files of captioned images as Hugging Face datasets writes them, read and written with
/// Apache Arrow's Parquet C++ library (the parquet dataset plugin and `sddata convert`).
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

namespace arrow {
class Array;
}
namespace parquet::arrow {
class FileReader;
}

namespace sdtrain {

/// One row group's images and captions, decoded from Parquet's pages.
class ParquetRows {
 public:
  ParquetRows(std::shared_ptr<arrow::Array> images, std::shared_ptr<arrow::Array> captions);
  int64_t size() const;
  /// Row `row`'s image bytes; false when the cell (or its struct's bytes) is null.
  bool image(int64_t row, std::string& bytes) const;
  /// Row `row`'s caption; "" when null.
  std::string caption(int64_t row) const;

 private:
  std::shared_ptr<arrow::Array> images_;  ///< binary or large_binary: the struct's bytes field
  std::shared_ptr<arrow::Array> captions_;
};

/// A Parquet file opened for the image and caption columns: its footer read and checked, its row
/// groups read on demand. ReadRowGroup is safe from several threads (one at a time per file).
class ParquetImageFile {
 public:
  /// Throws ConfigError naming `path` and the column when the file cannot be read as Parquet, a
  /// column is missing (the columns there are listed) or has the wrong type.
  ParquetImageFile(const std::string& path, const std::string& image_column, const std::string& caption_column);
  ~ParquetImageFile();

  const std::string& path() const { return path_; }
  /// Rows of each row group, in order.
  const std::vector<int64_t>& row_group_rows() const { return row_group_rows_; }
  /// Reads row group `group`'s two columns. Throws DataError naming the file and the row group
  /// when the pages cannot be read (a corrupt file).
  std::shared_ptr<const ParquetRows> read_row_group(int group) const;

 private:
  std::string path_;
  std::string image_column_;
  std::string caption_column_;
  std::vector<int> leaf_columns_;  ///< the Parquet leaf columns under the two columns
  std::vector<int64_t> row_group_rows_;
  mutable std::mutex mutex_;
  std::unique_ptr<parquet::arrow::FileReader> reader_;
};

/// Writes captioned images to a Parquet file with datasets' schema: `image` as
/// struct<bytes: binary, path: string> and `text` as string, the schema's "huggingface" metadata
/// naming the Image and Value features (so `datasets.load_dataset("parquet", ...)` decodes the
/// images), `rows_per_group` rows per row group (datasets writes 100 for images). The file
/// appears complete or not at all (written to a temporary, renamed at the end).
void write_parquet_images(const std::string& path, const std::vector<std::string>& images,
                          const std::vector<std::string>& paths, const std::vector<std::string>& captions,
                          int64_t rows_per_group);

}  // namespace sdtrain
