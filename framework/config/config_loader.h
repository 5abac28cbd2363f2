#pragma once
/// Reading, overriding, validating and printing the TrainConfig (protobuf text format).
#include <string>
#include <vector>

#include <google/protobuf/message.h>

#include "proto/sdtrain.pb.h"

namespace sdtrain {

/// A config as loaded from a file, with where it came from.
struct LoadedConfig {
  TrainConfig config;
  std::string path;      ///< the file as given
  std::string base_dir;  ///< its directory; relative paths in the config are resolved against it
};

/// `path` unchanged if absolute, else `base_dir / path` (relative paths in a config are relative
/// to the config file's folder).
std::string resolve_config_path(const std::string& base_dir, const std::string& path);

/// Parses text-format `text` into `message`. `filename` is used in messages.
/// Throws ConfigError "FILE:LINE:COL: message" (1-based) for syntax errors, unknown fields (with
/// the closest field name suggested), wrong value types and unknown Any types.
void parse_text_config(const std::string& text, const std::string& filename,
                       google::protobuf::Message* message);

/// Reads only `plugin_libraries` from a config text, skipping everything else (so that Any
/// options of external plugins need not be known yet). Throws ConfigError on syntax errors.
std::vector<std::string> read_plugin_libraries(const std::string& text, const std::string& filename);

/// Applies one `path.to.field=value` override. Paths follow field names through sub-messages,
/// `name[i]` indexes repeated fields (i == size appends), and a PluginSpec's `options` can be
/// entered (`data.train.options.root=...`). Values are parsed as the field's type (strings taken
/// verbatim, enums by name, bools as true/false). Throws ConfigError naming the path and the
/// expected type.
void apply_override(google::protobuf::Message* message, const std::string& assignment);

/// Semantic checks that name the offending field: positive sizes, consistent intervals, known
/// plugin types with matching options, existing resume path. Throws ConfigError.
void validate_train_config(const TrainConfig& config, const std::string& base_dir);

/// The whole load: reads `path`, loads its plugin libraries and `extra_plugins`, parses, applies
/// `overrides` in order, validates. Throws ConfigError / PluginError.
LoadedConfig load_train_config(const std::string& path, const std::vector<std::string>& overrides,
                               const std::vector<std::string>& extra_plugins = {});

/// The effective config in text format, Any options expanded, every field (defaults included)
/// when `with_defaults`.
std::string config_to_text(const TrainConfig& config, bool with_defaults = true);

}  // namespace sdtrain
