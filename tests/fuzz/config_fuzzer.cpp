// The config text and its --set overrides: the bytes up to the first NUL are a TrainConfig in
// text format, each NUL-separated piece after it one `path=value` override; then the semantic
// checks. Bad input must end in ConfigError (or PluginError for plugin types), nothing else.
#include <string>
#include <vector>

#include "framework/config/config_loader.h"
#include "plugins/builtin_plugins.h"
#include "proto/sdtrain.pb.h"
#include "sdtrain/errors.h"
#include "tests/fuzz/fuzz_target.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  sdtrain::anchor_builtin_plugins();
  const std::string bytes(reinterpret_cast<const char*>(data), size);
  std::vector<std::string> pieces;
  std::size_t start = 0;
  for (std::size_t at = bytes.find('\0'); at != std::string::npos; at = bytes.find('\0', start)) {
    pieces.push_back(bytes.substr(start, at - start));
    start = at + 1;
  }
  pieces.push_back(bytes.substr(start));
  try {
    sdtrain::TrainConfig config;
    sdtrain::parse_text_config(pieces[0], "fuzz.pbtxt", &config);
    for (std::size_t i = 1; i < pieces.size(); ++i) sdtrain::apply_override(&config, pieces[i]);
    sdtrain::validate_train_config(config, "/nonexistent-fuzz-base");
    sdtrain::config_to_text(config);
  } catch (const sdtrain::ConfigError&) {
  } catch (const sdtrain::PluginError&) {
  }
  return 0;
}
