#include "tools/sddata/sample_export.h"

#include <cstdio>
#include <filesystem>

#include <nlohmann/json.hpp>

#include "framework/data/image_codec.h"
#include "framework/io/atomic_file.h"
#include "framework/util/file_util.h"
#include "plugins/datasets/tar_shard.h"
#include "sdtrain/errors.h"
#ifdef SDTRAIN_WITH_PARQUET
#include "plugins/datasets/parquet_table.h"
#endif

namespace sdtrain {
namespace {

namespace fs = std::filesystem;

std::string format_name(ImageFormat format) {
  switch (format) {
    case ImageFormat::JPEG: return "jpeg";
    case ImageFormat::PNG: return "png";
    case ImageFormat::WEBP: return "webp";
    default: return "unknown";
  }
}

std::string extension_of(ImageFormat format) { return format == ImageFormat::JPEG ? "jpg" : format_name(format); }

std::string numbered(const char* pattern, int64_t a, int64_t b = 0) {
  char name[64];
  std::snprintf(name, sizeof name, pattern, static_cast<long long>(a), static_cast<long long>(b));
  return name;
}

/// Collects the samples of one output file and writes it when full.
class OutputWriter {
 public:
  OutputWriter(const fs::path& out, const ConvertOptions& options, int64_t total, ConvertReport& report)
      : out_(out), options_(options), report_(report),
        file_count_((total + options.shard_size - 1) / options.shard_size) {}

  void add(const std::string& image, const std::string& extension, const std::string& caption) {
    const std::string name = numbered("%08lld", report_.written);
    ++report_.written;
    images_.push_back(image);
    names_.push_back(name + "." + extension);
    captions_.push_back(caption);
    if (options_.to == "image_folder") {
      const fs::path file = out_ / "images" / names_.back();
      write_file_atomic(file.string(), image, /*overwrite=*/false);
      report_.files.push_back(file.string());
      metadata_ += nlohmann::json{{"file_name", "images/" + names_.back()}, {"text", caption}}.dump() + "\n";
      images_.clear();
      names_.clear();
      captions_.clear();
    } else if (static_cast<int64_t>(images_.size()) == options_.shard_size) {
      flush();
    }
  }

  void finish() {
    if (options_.to == "image_folder") {
      const fs::path file = out_ / "metadata.jsonl";
      write_file_atomic(file.string(), metadata_, /*overwrite=*/false);
      report_.files.push_back(file.string());
    } else if (!images_.empty()) {
      flush();
    }
  }

 private:
  void flush() {
    const int64_t shard = shard_++;
    if (options_.to == "webdataset") {
      const fs::path file = out_ / numbered("train-%05lld.tar", shard);
      TarShardWriter writer(file.string());
      for (std::size_t i = 0; i < images_.size(); ++i) {
        const std::string key = names_[i].substr(0, names_[i].find('.'));
        writer.add(names_[i], images_[i]);
        writer.add(key + ".txt", captions_[i]);
      }
      writer.commit();
      report_.files.push_back(file.string());
    } else {
#ifdef SDTRAIN_WITH_PARQUET
      // The count of files is known only at the end when samples are skipped; the name takes the
      // count planned from the dataset's size, as datasets names its shards up front.
      const fs::path file = out_ / numbered("train-%05lld-of-%05lld.parquet", shard, file_count_);
      write_parquet_images(file.string(), images_, names_, captions_, options_.rows_per_group);
      report_.files.push_back(file.string());
#endif
    }
    images_.clear();
    names_.clear();
    captions_.clear();
  }

  fs::path out_;
  const ConvertOptions& options_;
  ConvertReport& report_;
  int64_t file_count_;
  int64_t shard_ = 0;
  std::vector<std::string> images_, names_, captions_;
  std::string metadata_;
};

}  // namespace

int64_t list_samples(const Dataset& dataset, std::ostream& out) {
  int64_t failures = 0;
  for (std::size_t i = 0; i < dataset.size(); ++i) {
    nlohmann::json line;
    try {
      const Sample sample = dataset.get(i);
      line = {{"key", sample.key},
              {"caption", sample.caption},
              {"bytes", sample.encoded.size()},
              {"sha256", sha256_hex(sample.encoded)},
              {"format", format_name(sniff_image_format(sample.encoded))}};
    } catch (const DataError& e) {
      ++failures;
      line = {{"key", e.sample_key().empty() ? "#" + std::to_string(i) : e.sample_key()}, {"error", e.what()}};
    }
    out << line.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) << "\n";
  }
  return failures;
}

void check_convert_target(const std::string& out, const ConvertOptions& options) {
  if (options.to != "image_folder" && options.to != "webdataset" && options.to != "parquet") {
    throw ConfigError("--to: unknown layout '" + options.to + "' (image_folder, webdataset or parquet)");
  }
#ifndef SDTRAIN_WITH_PARQUET
  if (options.to == "parquet") throw ConfigError("--to parquet: this build has no Parquet support (pyarrow)");
#endif
  if (options.shard_size < 1) throw ConfigError("--shard-size: must be >= 1");
  if (options.rows_per_group < 1) throw ConfigError("--rows-per-group: must be >= 1");
  std::error_code error;
  if (fs::exists(out, error) && !(fs::is_directory(out, error) && fs::is_empty(out, error))) {
    throw ConfigError(out + ": exists and is not an empty folder; converting never overwrites");
  }
}

ConvertReport convert_dataset(const Dataset& dataset, const std::string& out, const ConvertOptions& options) {
  check_convert_target(out, options);
  std::error_code error;
  fs::create_directories(fs::path(out) / (options.to == "image_folder" ? "images" : ""), error);
  if (error) throw ConfigError(out + ": cannot create the folder: " + error.message());
  ConvertReport report;
  OutputWriter writer(out, options, static_cast<int64_t>(dataset.size()), report);
  for (std::size_t i = 0; i < dataset.size(); ++i) {
    Sample sample;
    try {
      sample = dataset.get(i);
    } catch (const DataError& e) {
      report.skipped.push_back((e.sample_key().empty() ? "#" + std::to_string(i) : e.sample_key()) + ": " + e.what());
      continue;
    }
    const ImageFormat format = sniff_image_format(sample.encoded);
    if (format == ImageFormat::UNKNOWN) {
      report.skipped.push_back(sample.key + ": not a JPEG, PNG or WebP image (" +
                               std::to_string(sample.encoded.size()) + " bytes)");
      continue;
    }
    writer.add(sample.encoded, extension_of(format), sample.caption);
  }
  writer.finish();
  return report;
}

}  // namespace sdtrain
