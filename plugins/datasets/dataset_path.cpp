#include "plugins/datasets/dataset_path.h"

#include <filesystem>

#include "framework/registry/registry.h"
#include "framework/util/strings.h"
#include "plugins/datasets/datasets.pb.h"
#include "sdtrain/errors.h"

namespace sdtrain {
namespace {

namespace fs = std::filesystem;

bool folder_holds(const fs::path& folder, const std::string& extension) {
  std::error_code error;
  for (const fs::directory_entry& entry : fs::directory_iterator(folder, error)) {
    if (entry.path().extension() == extension) return true;
  }
  return false;
}

}  // namespace

std::string dataset_format_of(const std::string& path, const std::string& format) {
  if (!format.empty()) {
    if (format != "webdataset" && format != "parquet" && format != "image_folder") {
      throw ConfigError("unknown dataset layout '" + format + "' (webdataset, parquet or image_folder)");
    }
    return format;
  }
  std::string name = path;
  while (name.size() > 1 && name.back() == '/') name.pop_back();
  if (ends_with(name, ".tar") || ends_with(name, ".tar}")) return "webdataset";
  if (ends_with(name, ".parquet") || ends_with(name, ".parquet}")) return "parquet";
  std::error_code error;
  if (fs::is_directory(path, error)) {
    const bool metadata = fs::exists(fs::path(path) / "metadata.csv", error) ||
                          fs::exists(fs::path(path) / "metadata.jsonl", error);
    if (!metadata && folder_holds(path, ".tar")) return "webdataset";
    if (!metadata && folder_holds(path, ".parquet")) return "parquet";
    return "image_folder";
  }
  throw ConfigError(path + ": not a dataset: expected an image folder (metadata.csv or metadata.jsonl), .tar "
                           "shards or .parquet files (or name the layout)");
}

std::shared_ptr<const Dataset> open_dataset_path(const std::string& path, const std::string& format) {
  const std::string type = dataset_format_of(path, format);
  PluginSpec spec;
  spec.set_type(type);
  if (type == "webdataset") {
    WebDatasetOptions options;
    options.add_shards(path);
    options.set_allow_empty_captions(true);
    spec.mutable_options()->PackFrom(options);
  } else if (type == "parquet") {
    ParquetOptions options;
    options.add_files(path);
    options.set_allow_empty_captions(true);
    spec.mutable_options()->PackFrom(options);
  } else {
    ImageFolderOptions options;
    options.set_root(path);
    options.set_allow_empty_captions(true);
    spec.mutable_options()->PackFrom(options);
  }
  return Registry<Dataset>::instance().create(spec, PluginContext{}, path);
}

}  // namespace sdtrain
