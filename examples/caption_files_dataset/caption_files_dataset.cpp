// A complete sdtrain dataset plugin in one file: images with side-car caption files.
// sdtrain decodes, augments, shuffles, shards by rank, batches and prefetches; the plugin only
// says how many samples there are and what sample i is.
#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "caption_files.pb.h"
#include "sdtrain/dataset.h"
#include "sdtrain/errors.h"
#include "sdtrain/log.h"
#include "sdtrain/plugin.h"

SDTRAIN_PLUGIN_LIBRARY()  // the version stamp sdtrain checks when it loads this library

namespace my_datasets {
namespace fs = std::filesystem;

class CaptionFilesDataset : public sdtrain::Dataset {
 public:
  CaptionFilesDataset(const CaptionFilesOptions& options, const std::string& base_dir) : options_(options) {
    root_ = fs::path(options.root());
    if (root_.is_relative()) root_ = fs::path(base_dir) / root_;
    if (!fs::is_directory(root_)) throw sdtrain::ConfigError("root: directory not found: " + root_.string());
    for (const auto& entry : fs::recursive_directory_iterator(root_)) {
      std::string extension = entry.path().extension().string();
      std::transform(extension.begin(), extension.end(), extension.begin(), ::tolower);
      if (extension == ".png" || extension == ".jpg" || extension == ".jpeg" || extension == ".webp") {
        images_.push_back(entry.path());
      }
    }
    std::sort(images_.begin(), images_.end());  // a stable order, whatever the file system's
    if (images_.empty()) throw sdtrain::ConfigError("root: no images in " + root_.string());
    SDTRAIN_LOG(INFO) << "caption_files: " << images_.size() << " images in " << root_.string();
  }

  std::size_t size() const override { return images_.size(); }

  sdtrain::Sample get(std::size_t index) const override {
    const fs::path& image = images_.at(index);
    fs::path caption_file = image;
    caption_file.replace_extension(options_.caption_extension());
    sdtrain::Sample sample;
    sample.key = fs::relative(image, root_).string();
    sample.location = image.string();  // bad-data messages name the full path
    sample.caption = read(caption_file);
    sample.encoded = read(image);  // sdtrain's workers decode it
    return sample;
  }

 private:
  static std::string read(const fs::path& path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) throw sdtrain::DataError(path.string() + ": cannot read");  // skipped by the bad-data policy
    std::ostringstream text;
    text << in.rdbuf();
    std::string out = text.str();
    while (!out.empty() && (out.back() == '\n' || out.back() == '\r')) out.pop_back();
    return out;
  }

  CaptionFilesOptions options_;
  fs::path root_;
  std::vector<fs::path> images_;
};

SDTRAIN_REGISTER_DATASET("caption_files", CaptionFilesOptions, "images with side-car caption files (photo.jpg + photo.txt)",
                         [](const CaptionFilesOptions& options, const sdtrain::PluginContext& context) {
                           if (options.root().empty()) throw sdtrain::ConfigError("root: required");
                           return std::make_unique<CaptionFilesDataset>(options, context.base_dir);
                         });

}  // namespace my_datasets
