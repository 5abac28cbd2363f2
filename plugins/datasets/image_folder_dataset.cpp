// "image_folder": the Hugging Face imagefolder layout (a folder of images plus metadata.csv or
// metadata.jsonl). Options: ImageFolderOptions in proto/datasets.proto.
#include <algorithm>
#include <cctype>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "framework/data/image_codec.h"
#include "framework/registry/registry.h"
#include "framework/util/file_util.h"
#include "framework/util/strings.h"
#include "plugins/datasets/csv_table.h"
#include "plugins/datasets/datasets.pb.h"
#include "sdtrain/dataset.h"
#include "sdtrain/errors.h"

namespace sdtrain {
namespace {

namespace fs = std::filesystem;

fs::path resolve(const std::string& path, const PluginContext& context) {
  fs::path p(path);
  if (p.is_relative()) p = fs::path(context.base_dir) / p;
  return p.lexically_normal();
}

/// A dataset of (image file, caption) rows read from the metadata file once at construction, or,
/// with options.caption, the image files found under root with that caption. Files are opened
/// lazily in get(), so construction stays fast on large or remote folders.
class ImageFolderDataset : public Dataset {
 public:
  ImageFolderDataset(const ImageFolderOptions& options, const PluginContext& context)
      : allow_empty_captions_(options.allow_empty_captions()) {
    if (options.root().empty()) throw ConfigError("root: required (the dataset folder)");
    root_ = resolve(options.root(), context);
    std::error_code error;
    if (!fs::is_directory(root_, error)) throw ConfigError("root: directory not found: " + root_.string());
    if (options.has_caption()) {
      if (!options.metadata_file().empty()) {
        throw ConfigError("metadata_file: set together with caption, which lists the images without a metadata "
                          "file; set one of them");
      }
      list_images(options.caption());
    } else {
      read_metadata(options);
    }
  }

  std::size_t size() const override { return rows_.size(); }

  Sample get(std::size_t index) const override {
    const Row& row = rows_.at(index);
    const std::string where =
        metadata_path_.empty() ? root_.string() : metadata_path_ + " line " + std::to_string(row.line);
    if (row.file_name.empty()) throw DataError(where + ": empty " + metadata_name_ + " file name");
    const fs::path relative = fs::path(row.file_name).lexically_normal();
    if (relative.is_absolute() || relative.has_root_name() || relative.has_root_directory() ||
        (!relative.empty() && *relative.begin() == "..")) {
      throw DataError(where + ": file name '" + row.file_name + "' is outside the dataset root " + root_.string(),
                      row.file_name);
    }
    const std::string path = (root_ / relative).string();
    if (row.caption.empty() && !allow_empty_captions_) {
      throw DataError(path + ": empty caption (column '" + caption_column_ + "', " + where +
                          "); set allow_empty_captions to train on it unconditionally",
                      row.file_name);
    }
    Sample sample;
    sample.key = row.file_name;
    sample.location = path;
    sample.caption = row.caption;
    std::string error;
    if (!try_read_file(path, sample.encoded, error)) {
      throw DataError(error, row.file_name);  // a missing file is recorded by its name
    }
    return sample;
  }

 private:
  /// Every image file under root_ with `caption` (ImageFolderOptions.caption), in path order.
  void list_images(const std::string& caption) {
    if (caption.empty() && !allow_empty_captions_) {
      throw ConfigError("caption: empty; set allow_empty_captions to train unconditionally");
    }
    std::vector<std::string> files;
    std::error_code error;
    for (fs::recursive_directory_iterator it(root_, fs::directory_options::skip_permission_denied, error), end;
         !error && it != end; it.increment(error)) {
      if (!it->is_regular_file(error)) continue;
      std::string extension = it->path().extension().string();
      for (char& c : extension) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
      if (extension == ".jpg" || extension == ".jpeg" || extension == ".png" || extension == ".webp") {
        files.push_back(it->path().lexically_relative(root_).generic_string());
      }
    }
    if (error) throw ConfigError("root: cannot list " + root_.string() + ": " + error.message());
    if (files.empty()) {
      throw ConfigError("root: no image files (.jpg, .jpeg, .png, .webp) under " + root_.string() +
                        " (caption is set, so no metadata file is read)");
    }
    std::sort(files.begin(), files.end());
    caption_column_ = "caption option";
    for (std::string& file : files) rows_.push_back({std::move(file), caption, 0});
  }

  /// The rows of the metadata file (ImageFolderOptions.metadata_file or the one found in root_).
  void read_metadata(const ImageFolderOptions& options) {
    std::error_code error;
    fs::path metadata;
    if (!options.metadata_file().empty()) {
      metadata = (root_ / options.metadata_file()).lexically_normal();
      if (!fs::is_regular_file(metadata, error)) {
        throw ConfigError("metadata_file: file not found: " + metadata.string());
      }
    } else {
      const fs::path csv = root_ / "metadata.csv";
      const fs::path jsonl = root_ / "metadata.jsonl";
      const bool has_csv = fs::is_regular_file(csv, error);
      const bool has_jsonl = fs::is_regular_file(jsonl, error);
      if (has_csv && has_jsonl) {
        throw ConfigError("metadata_file: both metadata.csv and metadata.jsonl are in " + root_.string() +
                          "; set metadata_file to choose one");
      }
      if (!has_csv && !has_jsonl) {
        throw ConfigError("root: no metadata.csv or metadata.jsonl in " + root_.string() +
                          " (the imagefolder layout needs one, with columns " + options.file_name_column() +
                          " and " + options.caption_column() + ")");
      }
      metadata = has_csv ? csv : jsonl;
    }
    metadata_path_ = metadata.string();
    metadata_name_ = metadata.filename().string();
    std::string text;
    try {
      text = read_file(metadata_path_);
    } catch (const std::runtime_error& e) {
      throw ConfigError(std::string("metadata_file: ") + e.what());
    }
    const MetadataTable table = ends_with(metadata_path_, ".jsonl") ? parse_jsonl_table(text, metadata_path_)
                                                                     : parse_csv_table(text, metadata_path_);
    const int file_column = table.column(options.file_name_column());
    if (file_column < 0) {
      throw ConfigError("file_name_column: column '" + options.file_name_column() + "' not in " + metadata_path_ +
                        " (columns: " + join(table.columns) + ")");
    }
    const int caption_column = table.column(options.caption_column());
    if (caption_column < 0) {
      throw ConfigError("caption_column: column '" + options.caption_column() + "' not in " + metadata_path_ +
                        " (columns: " + join(table.columns) + ")");
    }
    caption_column_ = options.caption_column();
    if (table.rows.empty()) throw ConfigError("metadata_file: " + metadata_path_ + " has no rows");
    rows_.reserve(table.rows.size());
    for (const MetadataTable::Row& row : table.rows) {
      rows_.push_back({row.cells[file_column], row.cells[caption_column], row.line});
    }
  }

  struct Row {
    std::string file_name;
    std::string caption;
    int line = 0;
  };
  fs::path root_;
  std::string metadata_path_;
  std::string metadata_name_;
  std::string caption_column_;
  bool allow_empty_captions_ = false;
  std::vector<Row> rows_;
};

SDTRAIN_REGISTER_DATASET("image_folder", ImageFolderOptions,
                         "a folder of JPEG/PNG/WebP images with metadata.csv or metadata.jsonl captions "
                         "(Hugging Face imagefolder layout), or with one caption for all (DreamBooth)",
                         [](const ImageFolderOptions& options, const PluginContext& context) {
                           return std::unique_ptr<Dataset>(new ImageFolderDataset(options, context));
                         });

}  // namespace
}  // namespace sdtrain
