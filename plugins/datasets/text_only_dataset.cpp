// "text_only": validation prompts without images (the recipe's TextOnly dataset). Options:
// TextOnlyOptions in proto/datasets.proto.
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "framework/data/image_codec.h"
#include "framework/registry/registry.h"
#include "framework/util/file_util.h"
#include "plugins/datasets/datasets.pb.h"
#include "sdtrain/dataset.h"
#include "sdtrain/errors.h"

namespace sdtrain {
namespace {

/// Prompts from the options and/or a file, each repeated `repeat` times in a row.
class TextOnlyDataset : public Dataset {
 public:
  TextOnlyDataset(const TextOnlyOptions& options, const PluginContext& context) {
    if (options.repeat() < 0) {
      throw ConfigError("repeat: must be >= 0 (0 = one copy per rank), got " + std::to_string(options.repeat()));
    }
    std::vector<std::pair<std::string, std::string>> prompts;  // (key, prompt)
    for (int i = 0; i < options.prompts_size(); ++i) {
      prompts.emplace_back("prompts[" + std::to_string(i) + "]", options.prompts(i));
    }
    if (!options.prompts_file().empty()) {
      std::filesystem::path path(options.prompts_file());
      if (path.is_relative()) path = std::filesystem::path(context.base_dir) / path;
      const std::string file = path.lexically_normal().string();
      std::string text;
      try {
        text = read_file(file);
      } catch (const std::runtime_error& e) {
        throw ConfigError(std::string("prompts_file: ") + e.what());
      }
      if (text.compare(0, 3, "\xEF\xBB\xBF") == 0) text.erase(0, 3);
      std::size_t start = 0;
      int line = 0;
      while (start < text.size()) {
        std::size_t end = text.find('\n', start);
        if (end == std::string::npos) end = text.size();
        std::string prompt = text.substr(start, end - start);
        start = end + 1;
        ++line;
        if (!prompt.empty() && prompt.back() == '\r') prompt.pop_back();
        if (prompt.find_first_not_of(" \t") == std::string::npos) continue;
        prompts.emplace_back(file + ":" + std::to_string(line), prompt);
      }
    }
    if (prompts.empty()) throw ConfigError("prompts: no prompts (set prompts or a non-empty prompts_file)");
    const int copies = options.repeat() > 0 ? options.repeat() : std::max(1, context.world_size);
    for (const auto& [key, prompt] : prompts) {
      for (int copy = 0; copy < copies; ++copy) {
        Sample sample;
        sample.key = copies > 1 ? key + "#" + std::to_string(copy) : key;
        sample.caption = prompt;
        samples_.push_back(std::move(sample));
      }
    }
  }

  std::size_t size() const override { return samples_.size(); }
  Sample get(std::size_t index) const override { return samples_.at(index); }

 private:
  std::vector<Sample> samples_;
};

SDTRAIN_REGISTER_DATASET("text_only", TextOnlyOptions,
                         "captions without images for validation sampling, repeated once per rank",
                         [](const TextOnlyOptions& options, const PluginContext& context) {
                           return std::unique_ptr<Dataset>(new TextOnlyDataset(options, context));
                         });

}  // namespace
}  // namespace sdtrain
