#pragma once
/// The dataset a path names, by its layout (sddata's PATH, the loader benchmark's).
#include <memory>
#include <string>

#include "sdtrain/dataset.h"

namespace sdtrain {

/// Opens `path` with the dataset plugin its layout calls for: a .tar file, a brace pattern of
/// them or a folder of .tar files is a webdataset; a .parquet file, a pattern of them or a folder
/// of .parquet files a parquet set (image column "image", caption column "text"); any other
/// folder an image_folder (metadata.csv or metadata.jsonl). Empty captions are allowed, so that
/// they can be counted and carried over. `format` names the plugin ("webdataset", "parquet",
/// "image_folder") when given, instead of the guess. Throws ConfigError when the path fits none.
std::shared_ptr<const Dataset> open_dataset_path(const std::string& path, const std::string& format = "");

/// The plugin open_dataset_path chooses for `path` (or `format` when given).
std::string dataset_format_of(const std::string& path, const std::string& format = "");

}  // namespace sdtrain
