// "parquet": Hugging Face datasets' Parquet files of captioned images. Options: ParquetOptions in
// plugins/datasets/datasets.proto.
#include <algorithm>
#include <filesystem>
#include <list>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "framework/registry/registry.h"
#include "plugins/datasets/datasets.pb.h"
#include "plugins/datasets/parquet_table.h"
#include "plugins/datasets/shard_files.h"
#include "sdtrain/dataset.h"
#include "sdtrain/errors.h"

namespace sdtrain {
namespace {

/// Every row of the files, one shard per row group; row groups read on demand and kept in a
/// least-recently-used cache shared by the loader's workers.
class ParquetDataset : public Dataset {
 public:
  ParquetDataset(const ParquetOptions& options, const PluginContext& context)
      : allow_empty_captions_(options.allow_empty_captions()), cache_capacity_(options.cached_row_groups()) {
    if (cache_capacity_ < 1) {
      throw ConfigError("cached_row_groups: must be >= 1, got " + std::to_string(cache_capacity_));
    }
    const std::vector<std::string> paths =
        resolve_shard_files({options.files().begin(), options.files().end()}, ".parquet", context, "files");
    for (const std::string& path : paths) {
      files_.push_back(std::make_unique<ParquetImageFile>(path, options.image_column(), options.caption_column()));
      names_.push_back(std::filesystem::path(path).filename().string());
      const auto& groups = files_.back()->row_group_rows();
      int64_t row = 0;
      for (std::size_t group = 0; group < groups.size(); ++group) {
        if (groups[group] == 0) continue;
        groups_.push_back({static_cast<int>(files_.size() - 1), static_cast<int>(group), row,
                           static_cast<int64_t>(size_)});
        size_ += static_cast<std::size_t>(groups[group]);
        row += groups[group];
        shard_ends_.push_back(size_);
      }
    }
    if (size_ == 0) throw ConfigError("files: no rows in " + std::to_string(paths.size()) + " Parquet file(s)");
  }

  std::size_t size() const override { return size_; }
  std::vector<std::size_t> shard_ends() const override { return shard_ends_; }

  Sample get(std::size_t index) const override {
    if (index >= size_) throw std::out_of_range("ParquetDataset::get: index out of range");
    const auto group_index = static_cast<std::size_t>(
        std::upper_bound(shard_ends_.begin(), shard_ends_.end(), index) - shard_ends_.begin());
    const Group& group = groups_[group_index];
    const int64_t row_in_group = static_cast<int64_t>(index) - group.first_index;
    const int64_t row = group.first_row + row_in_group;
    Sample sample;
    sample.key = names_[group.file] + ":" + std::to_string(row);
    sample.location = files_[group.file]->path() + " row " + std::to_string(row);
    std::shared_ptr<const ParquetRows> rows;
    try {
      rows = row_group(group_index);
    } catch (const DataError& e) {
      throw DataError(e.what(), sample.key);
    }
    if (!rows->image(row_in_group, sample.encoded)) {
      throw DataError(sample.location + ": the image is null", sample.key);
    }
    sample.caption = rows->caption(row_in_group);
    if (sample.caption.empty() && !allow_empty_captions_) {
      throw DataError(sample.location + ": empty or null caption; set allow_empty_captions to train on it "
                                        "unconditionally",
                      sample.key);
    }
    return sample;
  }

 private:
  struct Group {
    int file = 0;
    int group = 0;            ///< the row group within its file
    int64_t first_row = 0;    ///< its first row's number within the file
    int64_t first_index = 0;  ///< its first row's dataset index
  };

  /// Row group `group_index` (into groups_), from the cache or read (outside the lock, so that
  /// workers read different row groups at once). A row group that failed to read fails again
  /// without being read: every row of a corrupt group would otherwise read it anew.
  std::shared_ptr<const ParquetRows> row_group(std::size_t group_index) const {
    {
      std::lock_guard<std::mutex> lock(cache_mutex_);
      const auto found = cache_.find(group_index);
      if (found != cache_.end()) {
        recency_.splice(recency_.begin(), recency_, found->second.second);
        return found->second.first;
      }
      const auto failed = failed_groups_.find(group_index);
      if (failed != failed_groups_.end()) throw DataError(failed->second);
    }
    const Group& group = groups_[group_index];
    std::shared_ptr<const ParquetRows> rows;
    try {
      rows = files_[group.file]->read_row_group(group.group);
    } catch (const DataError& e) {
      std::lock_guard<std::mutex> lock(cache_mutex_);
      failed_groups_.emplace(group_index, e.what());
      throw;
    }
    std::lock_guard<std::mutex> lock(cache_mutex_);
    if (cache_.count(group_index) == 0) {
      recency_.push_front(group_index);
      cache_.emplace(group_index, std::make_pair(rows, recency_.begin()));
      while (static_cast<int>(cache_.size()) > cache_capacity_) {
        cache_.erase(recency_.back());
        recency_.pop_back();
      }
    }
    return rows;
  }

  bool allow_empty_captions_ = false;
  int cache_capacity_ = 8;
  std::vector<std::unique_ptr<ParquetImageFile>> files_;
  std::vector<std::string> names_;
  std::vector<Group> groups_;
  std::vector<std::size_t> shard_ends_;
  std::size_t size_ = 0;
  mutable std::mutex cache_mutex_;
  mutable std::list<std::size_t> recency_;  ///< most recently used first
  mutable std::map<std::size_t, std::pair<std::shared_ptr<const ParquetRows>, std::list<std::size_t>::iterator>>
      cache_;
  mutable std::map<std::size_t, std::string> failed_groups_;  ///< row groups that failed to read: their error
};

SDTRAIN_REGISTER_DATASET("parquet", ParquetOptions,
                         "Hugging Face datasets' Parquet files (an Image struct {bytes, path} column and a text "
                         "column), read row group by row group",
                         [](const ParquetOptions& options, const PluginContext& context) {
                           return std::unique_ptr<Dataset>(new ParquetDataset(options, context));
                         });

}  // namespace
}  // namespace sdtrain
