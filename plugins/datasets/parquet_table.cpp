#include "plugins/datasets/parquet_table.h"

#include <arrow/api.h>
#include <arrow/io/file.h>
#include <parquet/arrow/reader.h>
#include <parquet/arrow/writer.h>
#include <parquet/exception.h>
#include <parquet/file_reader.h>
#include <parquet/metadata.h>
#include <parquet/schema.h>

#include "framework/io/atomic_file.h"
#include "framework/util/strings.h"
#include "sdtrain/errors.h"

namespace sdtrain {
namespace {

bool holds_bytes(const arrow::DataType& type) {
  return type.id() == arrow::Type::BINARY || type.id() == arrow::Type::LARGE_BINARY;
}
bool holds_text(const arrow::DataType& type) {
  return type.id() == arrow::Type::STRING || type.id() == arrow::Type::LARGE_STRING;
}

/// The `bytes` child of datasets' Image struct, or -1.
int bytes_field(const arrow::DataType& type) {
  if (type.id() != arrow::Type::STRUCT) return -1;
  const auto& fields = type.fields();
  for (std::size_t i = 0; i < fields.size(); ++i) {
    if (fields[i]->name() == "bytes" && holds_bytes(*fields[i]->type())) return static_cast<int>(i);
  }
  return -1;
}

std::string_view view(const arrow::Array& array, int64_t row) {
  switch (array.type_id()) {
    case arrow::Type::BINARY:
      return static_cast<const arrow::BinaryArray&>(array).GetView(row);
    case arrow::Type::LARGE_BINARY:
      return static_cast<const arrow::LargeBinaryArray&>(array).GetView(row);
    case arrow::Type::STRING:
      return static_cast<const arrow::StringArray&>(array).GetView(row);
    case arrow::Type::LARGE_STRING:
      return static_cast<const arrow::LargeStringArray&>(array).GetView(row);
    default:
      throw DataError("a Parquet column of type " + array.type()->ToString() + " where bytes or text were expected");
  }
}

/// An Arrow output stream into an AtomicFile, so that a Parquet file appears whole or not at all.
class AtomicFileSink : public arrow::io::OutputStream {
 public:
  explicit AtomicFileSink(AtomicFile& file) : file_(file) {}
  arrow::Status Close() override {
    closed_ = true;
    return arrow::Status::OK();
  }
  bool closed() const override { return closed_; }
  arrow::Result<int64_t> Tell() const override { return static_cast<int64_t>(file_.offset()); }
  arrow::Status Write(const void* data, int64_t nbytes) override {
    try {
      file_.write(data, static_cast<std::size_t>(nbytes));
    } catch (const std::exception& e) {
      return arrow::Status::IOError(e.what());
    }
    return arrow::Status::OK();
  }
  using arrow::io::OutputStream::Write;

 private:
  AtomicFile& file_;
  bool closed_ = false;
};

}  // namespace

ParquetRows::ParquetRows(std::shared_ptr<arrow::Array> images, std::shared_ptr<arrow::Array> captions)
    : images_(std::move(images)), captions_(std::move(captions)) {}

int64_t ParquetRows::size() const { return images_->length(); }

bool ParquetRows::image(int64_t row, std::string& bytes) const {
  if (images_->IsNull(row)) return false;
  bytes.assign(view(*images_, row));
  return true;
}

std::string ParquetRows::caption(int64_t row) const {
  if (captions_->IsNull(row)) return "";
  return std::string(view(*captions_, row));
}

ParquetImageFile::ParquetImageFile(const std::string& path, const std::string& image_column,
                                   const std::string& caption_column)
    : path_(path), image_column_(image_column), caption_column_(caption_column) {
  try {
    auto file = arrow::io::ReadableFile::Open(path);
    if (!file.ok()) throw ConfigError(path + ": cannot open: " + file.status().ToString());
    auto reader = parquet::arrow::OpenFile(*file, arrow::default_memory_pool());
    if (!reader.ok()) throw ConfigError(path + ": not a readable Parquet file: " + reader.status().ToString());
    reader_ = std::move(*reader);
  } catch (const parquet::ParquetException& e) {
    throw ConfigError(path + ": not a readable Parquet file: " + e.what());
  }
  std::shared_ptr<arrow::Schema> schema;
  if (const arrow::Status status = reader_->GetSchema(&schema); !status.ok()) {
    throw ConfigError(path + ": cannot read the schema: " + status.ToString());
  }
  std::vector<std::string> columns;
  for (const auto& field : schema->fields()) columns.push_back(field->name());
  auto check = [&](const std::string& name, const std::string& option, bool image) {
    const std::shared_ptr<arrow::Field> field = schema->GetFieldByName(name);
    if (!field) {
      throw ConfigError(option + ": no column '" + name + "' in " + path + " (its columns: " + join(columns) + ")");
    }
    const arrow::DataType& type = *field->type();
    const bool ok = image ? (holds_bytes(type) || bytes_field(type) >= 0) : holds_text(type);
    if (!ok) {
      throw ConfigError(option + ": the column '" + name + "' of " + path + " is " + type.ToString() + "; expected " +
                        (image ? "struct<bytes: binary, path: string> (datasets' Image feature) or binary"
                               : "string"));
    }
  };
  check(image_column, "image_column", true);
  check(caption_column, "caption_column", false);
  const std::shared_ptr<parquet::FileMetaData> metadata = reader_->parquet_reader()->metadata();
  const parquet::SchemaDescriptor* leaves = metadata->schema();
  for (int i = 0; i < leaves->num_columns(); ++i) {
    const std::string top = leaves->Column(i)->path()->ToDotVector().front();
    if (top == image_column || top == caption_column) leaf_columns_.push_back(i);
  }
  // The footer declares the file's rows and each row group's; a file where they disagree (or a
  // count is negative) is corrupt. Refused here, before the dataset counts a forged row group's
  // hundreds of thousands of rows as samples that each fail to read (a fuzzer's input: 7 rows in
  // the file, 505,438 in its second row group).
  int64_t total = 0;
  for (int group = 0; group < metadata->num_row_groups(); ++group) {
    const int64_t rows = metadata->RowGroup(group)->num_rows();
    if (rows < 0 || __builtin_add_overflow(total, rows, &total)) {
      throw ConfigError(path + ": row group " + std::to_string(group) + " declares " + std::to_string(rows) +
                        " rows; the file is corrupt");
    }
    row_group_rows_.push_back(rows);
  }
  if (total != metadata->num_rows()) {
    throw ConfigError(path + ": its row groups hold " + std::to_string(total) + " rows but its footer declares " +
                      std::to_string(metadata->num_rows()) + "; the file is corrupt");
  }
}

ParquetImageFile::~ParquetImageFile() = default;

std::shared_ptr<const ParquetRows> ParquetImageFile::read_row_group(int group) const {
  const std::string where = path_ + " row group " + std::to_string(group);
  std::shared_ptr<arrow::Table> table;
  try {
    std::lock_guard<std::mutex> lock(mutex_);
    auto read = reader_->ReadRowGroup(group, leaf_columns_);
    if (!read.ok()) throw DataError(where + ": cannot read: " + read.status().ToString());
    auto combined = (*read)->CombineChunks();
    if (!combined.ok()) throw DataError(where + ": cannot read: " + combined.status().ToString());
    table = *combined;
  } catch (const parquet::ParquetException& e) {
    throw DataError(where + ": cannot read: " + e.what());
  }
  auto column = [&](const std::string& name) -> std::shared_ptr<arrow::Array> {
    const std::shared_ptr<arrow::ChunkedArray> chunks = table->GetColumnByName(name);
    if (!chunks || chunks->num_chunks() == 0) {
      auto empty = arrow::MakeEmptyArray(chunks ? chunks->type() : arrow::binary());
      return empty.ok() ? *empty : nullptr;
    }
    return chunks->chunk(0);
  };
  std::shared_ptr<arrow::Array> images = column(image_column_);
  const int bytes = bytes_field(*images->type());
  if (bytes >= 0) {
    // The flattened field carries the struct's own nulls too.
    auto flattened = static_cast<const arrow::StructArray&>(*images).GetFlattenedField(bytes);
    if (!flattened.ok()) throw DataError(where + ": " + flattened.status().ToString());
    images = *flattened;
  }
  return std::make_shared<ParquetRows>(std::move(images), column(caption_column_));
}

void write_parquet_images(const std::string& path, const std::vector<std::string>& images,
                          const std::vector<std::string>& paths, const std::vector<std::string>& captions,
                          int64_t rows_per_group) {
  auto fail = [&](const arrow::Status& status) {
    if (!status.ok()) throw DataError(path + ": cannot write: " + status.ToString(), path);
  };
  arrow::BinaryBuilder bytes_builder;
  arrow::StringBuilder path_builder;
  arrow::StringBuilder text_builder;
  for (std::size_t i = 0; i < images.size(); ++i) {
    fail(bytes_builder.Append(images[i]));
    fail(path_builder.Append(paths[i]));
    fail(text_builder.Append(captions[i]));
  }
  std::shared_ptr<arrow::Array> bytes_array, path_array, text_array;
  fail(bytes_builder.Finish(&bytes_array));
  fail(path_builder.Finish(&path_array));
  fail(text_builder.Finish(&text_array));
  const arrow::FieldVector image_fields = {arrow::field("bytes", arrow::binary()), arrow::field("path", arrow::utf8())};
  auto image_array = arrow::StructArray::Make({bytes_array, path_array}, image_fields);
  if (!image_array.ok()) fail(image_array.status());
  const auto metadata = arrow::key_value_metadata(
      {"huggingface"}, {R"({"info": {"features": {"image": {"_type": "Image"}, )"
                        R"("text": {"dtype": "string", "_type": "Value"}}}})"});
  const auto schema = arrow::schema(
      {arrow::field("image", arrow::struct_(image_fields)), arrow::field("text", arrow::utf8())}, metadata);
  const auto table = arrow::Table::Make(schema, {*image_array, text_array});
  AtomicFile file(path, /*overwrite=*/false);
  auto sink = std::make_shared<AtomicFileSink>(file);
  // store_schema: the Arrow schema, its "huggingface" metadata included, goes into the file's
  // key-value metadata, where datasets reads the features (pyarrow's default; C++'s is off).
  fail(parquet::arrow::WriteTable(*table, arrow::default_memory_pool(), sink, std::max<int64_t>(rows_per_group, 1),
                                  parquet::default_writer_properties(),
                                  parquet::ArrowWriterProperties::Builder().store_schema()->build()));
  file.commit();
}

}  // namespace sdtrain
