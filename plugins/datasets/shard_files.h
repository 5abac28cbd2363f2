#pragma once
/// The shard files a sharded dataset's options name (webdataset's `shards`, parquet's `files`).
#include <string>
#include <vector>

#include "sdtrain/plugin.h"

namespace sdtrain {

/// Expands shell-style braces as WebDataset's shard lists use them (the braceexpand package):
/// "{00000..00127}" is a numeric range, zero-padded to the wider bound when either bound has a
/// leading zero, and "{a,b,c}" a list; several groups multiply ("{a,b}-{0..1}": a-0 a-1 b-0
/// b-1), nested groups expand inside out. Text without braces is returned as is. Throws
/// ConfigError naming `field` for an unbalanced brace or an empty range.
std::vector<std::string> expand_braces(const std::string& pattern, const std::string& field);

/// The files the entries of `patterns` name, in order: each entry is brace-expanded; a result
/// that is a folder stands for its files ending in `extension` (e.g. ".tar"), in name order.
/// Relative paths are resolved against the config's folder (context.base_dir). Throws
/// ConfigError naming `field` when there are no entries, a file does not exist, a folder holds no
/// such file, or a file appears twice.
std::vector<std::string> resolve_shard_files(const std::vector<std::string>& patterns, const std::string& extension,
                                             const PluginContext& context, const std::string& field);

}  // namespace sdtrain
