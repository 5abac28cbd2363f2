// "webdataset": tar shards in WebDataset's layout. Options: WebDatasetOptions in
// plugins/datasets/datasets.proto.
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "sdtrain/log.h"
#include "framework/registry/registry.h"
#include "plugins/datasets/datasets.pb.h"
#include "plugins/datasets/shard_files.h"
#include "plugins/datasets/tar_shard.h"
#include "sdtrain/dataset.h"
#include "sdtrain/errors.h"

namespace sdtrain {
namespace {

/// The shards' samples indexed once (tar headers only), read member by member in get().
class WebDatasetDataset : public Dataset {
 public:
  WebDatasetDataset(const WebDatasetOptions& options, const PluginContext& context)
      : caption_extension_(options.caption_extension()),
        json_caption_field_(options.json_caption_field()),
        allow_empty_captions_(options.allow_empty_captions()) {
    if (caption_extension_.empty()) throw ConfigError("caption_extension: empty (use txt or json)");
    for (const std::string& extension : options.image_extensions()) image_extensions_.push_back(extension);
    if (image_extensions_.empty()) image_extensions_ = {"jpg", "jpeg", "png", "webp"};
    const std::vector<std::string> files = resolve_shard_files(
        {options.shards().begin(), options.shards().end()}, ".tar", context, "shards");
    for (std::size_t shard = 0; shard < files.size(); ++shard) {
      TarListing listing;
      try {
        listing = list_tar(files[shard]);
      } catch (const DataError& e) {
        throw ConfigError(std::string("shards: ") + e.what());
      }
      std::vector<WebDatasetSample> samples = group_webdataset_samples(listing);
      if (!listing.error.empty()) {
        SDTRAIN_LOG(WARNING) << files[shard] << ": the shard breaks: " << listing.error << "; the " << samples.size()
                             << " samples up to that point are kept, the one at the break as bad data";
      }
      const std::string shard_name = std::filesystem::path(files[shard]).filename().string();
      for (WebDatasetSample& sample : samples) entries_.push_back({static_cast<int>(shard), std::move(sample)});
      shard_ends_.push_back(entries_.size());
      shard_paths_.push_back(files[shard]);
      shard_names_.push_back(shard_name);
    }
    if (entries_.empty()) throw ConfigError("shards: no samples in " + std::to_string(files.size()) + " shard(s)");
  }

  std::size_t size() const override { return entries_.size(); }
  std::vector<std::size_t> shard_ends() const override { return shard_ends_; }

  Sample get(std::size_t index) const override {
    const Entry& entry = entries_.at(index);
    const std::string& path = shard_paths_[entry.shard];
    Sample sample;
    sample.key = shard_names_[entry.shard] + ":" + entry.sample.key;
    sample.location = path + " (key '" + entry.sample.key + "')";
    if (!entry.sample.problem.empty()) throw DataError(sample.location + ": " + entry.sample.problem, sample.key);
    const TarMember* image = nullptr;
    for (const std::string& extension : image_extensions_) {
      if ((image = part(entry, extension))) break;
    }
    if (!image) {
      throw DataError(sample.location + ": no image part (looked for ." + join_extensions() + ")", sample.key);
    }
    const TarMember* caption = part(entry, caption_extension_);
    if (!caption && !allow_empty_captions_) {
      throw DataError(sample.location + ": no ." + caption_extension_ +
                          " part (the caption); set allow_empty_captions to train on it unconditionally",
                      sample.key);
    }
    // One open of the shard for both parts.
    std::vector<std::string> contents = read_members(path, caption ? std::vector<const TarMember*>{image, caption}
                                                                   : std::vector<const TarMember*>{image});
    sample.encoded = std::move(contents[0]);
    if (caption) {
      sample.caption = std::move(contents[1]);
      if (caption_extension_ == "json") sample.caption = caption_from_json(sample.caption, sample);
    }
    if (sample.caption.empty() && !allow_empty_captions_) {
      throw DataError(sample.location + ": empty caption; set allow_empty_captions to train on it unconditionally",
                      sample.key);
    }
    return sample;
  }

 private:
  struct Entry {
    int shard = 0;
    WebDatasetSample sample;
  };

  static const TarMember* part(const Entry& entry, const std::string& suffix) {
    for (const auto& [name, member] : entry.sample.parts) {
      if (name == suffix) return &member;
    }
    return nullptr;
  }

  std::string join_extensions() const {
    std::string out;
    for (const std::string& extension : image_extensions_) out += (out.empty() ? "" : ", .") + extension;
    return out;
  }

  std::string caption_from_json(const std::string& text, const Sample& sample) const {
    const nlohmann::json json = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
    if (json.is_discarded() || !json.is_object()) {
      throw DataError(sample.location + ": the .json part is not a JSON object", sample.key);
    }
    const auto field = json.find(json_caption_field_);
    if (field == json.end() || field->is_null()) return "";
    if (!field->is_string()) {
      throw DataError(sample.location + ": the .json field '" + json_caption_field_ + "' is not a string",
                      sample.key);
    }
    return field->get<std::string>();
  }

  std::string caption_extension_;
  std::string json_caption_field_;
  bool allow_empty_captions_ = false;
  std::vector<std::string> image_extensions_;
  std::vector<std::string> shard_paths_;
  std::vector<std::string> shard_names_;
  std::vector<std::size_t> shard_ends_;
  std::vector<Entry> entries_;
};

SDTRAIN_REGISTER_DATASET("webdataset", WebDatasetOptions,
                         "WebDataset tar shards (train-{00000..00127}.tar: jpg/png/webp with txt or json "
                         "captions), indexed once and read by offset",
                         [](const WebDatasetOptions& options, const PluginContext& context) {
                           return std::unique_ptr<Dataset>(new WebDatasetDataset(options, context));
                         });

}  // namespace
}  // namespace sdtrain
