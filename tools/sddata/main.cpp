// sddata: looks at a training set before a run spends GPU hours on it.
//
//   sddata inspect (PATH | --config FILE) [--buckets RESOLUTION]
//   sddata verify  (PATH | --config FILE)
//   sddata list    (PATH | --config FILE)
//   sddata convert (PATH | --config FILE) OUT --to image_folder|webdataset|parquet
//
// PATH is an image folder (image_folder: metadata.csv / metadata.jsonl), WebDataset .tar shards
// (a file, a brace pattern or a folder of them) or Parquet files (likewise), told apart by their
// layout (dataset_path.h; --from names it); empty captions are allowed so that they can be
// counted; --config takes data.train of a run's config, any dataset plugin, with
// its data.bad_data pixel limit and, for inspect, its data.buckets. inspect reads every image's
// header: the sample count, empty captions, unreadable samples, sizes and an aspect histogram,
// and the bucket report (kohya's rules; batches of the config's data.batch_size on one rank, else
// of 1) with --buckets or the config's buckets. verify decodes
// every image in full and lists those that fail. list prints one JSON line per sample (key,
// caption, image size and SHA-256). convert writes the samples to OUT in another layout with the
// bytes unchanged (sample_export.h). Exit codes: 0 ok, 1 verify found bad samples, convert skipped
// some or the data could not be read, 2 bad usage or config.
#include <iostream>
#include <memory>
#include <optional>
#include <string>
#include <thread>

#include <boost/program_options.hpp>

#include "framework/config/config_loader.h"
#include "framework/data/bucket_plan.h"
#include "framework/data/dataset_survey.h"
#include "framework/registry/registry.h"
#include "plugins/builtin_plugins.h"
#include "sdtrain/dataset.h"
#include "sdtrain/errors.h"
#include "plugins/datasets/dataset_path.h"
#include "tools/sddata/sample_export.h"

namespace po = boost::program_options;

namespace {

struct Source {
  std::shared_ptr<const sdtrain::Dataset> dataset;
  std::string name;
  int64_t max_pixels = 89478485;  // PIL's MAX_IMAGE_PIXELS, data.bad_data's default
  bool has_buckets = false;
  sdtrain::BucketConfig buckets;
  int resolution = 512;
  int64_t global_batch = 1;  ///< data.batch_size of one rank, for the report's batches
};

Source open_source(const std::string& path, const std::string& config_path, const std::string& format) {
  Source source;
  sdtrain::PluginContext context;
  if (!config_path.empty()) {
    const sdtrain::LoadedConfig loaded = sdtrain::load_train_config(config_path, {});
    const sdtrain::DataConfig& data = loaded.config.data();
    context.base_dir = loaded.base_dir;
    source.dataset = sdtrain::Registry<sdtrain::Dataset>::instance().create(data.train(), context, "data.train");
    source.name = config_path + " data.train (" + data.train().type() + ")";
    source.max_pixels = data.bad_data().max_image_pixels();
    source.has_buckets = data.has_buckets();
    source.buckets = data.buckets();
    source.resolution = data.transforms().resolution();
    source.global_batch = data.batch_size();
    return source;
  }
  source.dataset = sdtrain::open_dataset_path(path, format);
  source.name = path + " (" + sdtrain::dataset_format_of(path, format) + ")";
  return source;
}

}  // namespace

int main(int argc, char** argv) {
  sdtrain::anchor_builtin_plugins();
  po::options_description options(
      "sddata: inspect or verify a training set\n\n"
      "Usage:\n"
      "  sddata inspect (PATH | --config FILE) [--buckets RESOLUTION]\n"
      "  sddata verify  (PATH | --config FILE)\n"
      "  sddata list    (PATH | --config FILE)\n"
      "  sddata convert (PATH | --config FILE) OUT --to image_folder|webdataset|parquet\n\n"
      "PATH is an image folder (metadata.csv or metadata.jsonl), WebDataset .tar shards or Parquet files\n"
      "(a file, a brace pattern such as 'train-{00000..00009}.tar', or a folder of them); --from names\n"
      "the layout instead of the guess. --config reads data.train of a run's config (any dataset\n"
      "plugin). inspect reads the image headers: count, empty captions, unreadable samples, sizes,\n"
      "aspect histogram, and the bucket report with --buckets or the config's data.buckets. verify\n"
      "decodes every image and lists the bad ones. list prints one JSON line per sample (key, caption,\n"
      "image bytes and SHA-256). convert writes every sample to the new folder OUT in another layout,\n"
      "image bytes and captions unchanged, and lists what it skipped. Exit codes: 0 ok, 1 bad samples\n"
      "found by verify or skipped by convert, or unreadable data, 2 bad usage or config.\n\n"
      "Options");
  std::string verb;
  std::string path;
  std::string config_path;
  std::string out;
  std::string from;
  sdtrain::ConvertOptions convert;
  int bucket_resolution = 0;
  int threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  options.add_options()
      ("help,h", "print this help and exit")
      ("config,c", po::value(&config_path)->value_name("FILE"), "take data.train of this run config")
      ("buckets", po::value(&bucket_resolution)->value_name("RESOLUTION"),
       "inspect: the bucket report for buckets of RESOLUTION^2 area (sides 256..1024, step 64)")
      ("threads", po::value(&threads)->value_name("N"), "reading threads (default: the cores)")
      ("from", po::value(&from)->value_name("LAYOUT"), "PATH's layout: image_folder, webdataset or parquet")
      ("to", po::value(&convert.to)->value_name("LAYOUT"), "convert: image_folder, webdataset or parquet")
      ("shard-size", po::value(&convert.shard_size)->value_name("N"),
       "convert: samples per .tar shard or .parquet file (default 1000)")
      ("rows-per-group", po::value(&convert.rows_per_group)->value_name("N"),
       "convert: Parquet rows per row group (default 100, as datasets writes images)");
  po::options_description positional_options;
  positional_options.add_options()("verb", po::value(&verb))("path", po::value(&path))("out", po::value(&out));
  po::positional_options_description positional;
  positional.add("verb", 1).add("path", 1).add("out", 1);
  po::options_description all;
  all.add(options).add(positional_options);
  po::variables_map vm;
  try {
    po::store(po::command_line_parser(argc, argv).options(all).positional(positional).run(), vm);
    po::notify(vm);
  } catch (const po::error& error) {
    std::cerr << "sddata: " << error.what() << "\n(see sddata --help)\n";
    return 2;
  }
  if (vm.count("help")) {
    std::cout << options << "\n";
    return 0;
  }
  // With --config the one positional after the verb is OUT.
  if (!config_path.empty() && out.empty() && !path.empty() && verb == "convert") std::swap(path, out);
  const bool known = verb == "inspect" || verb == "verify" || verb == "list" || verb == "convert";
  if (!known || path.empty() == config_path.empty() || (verb != "inspect" && bucket_resolution != 0)) {
    std::cerr << "sddata: expected `inspect`, `verify`, `list` or `convert` with a PATH or --config FILE (not "
                 "both); --buckets only with inspect\n(see sddata --help)\n";
    return 2;
  }
  if ((verb == "convert") != !out.empty() || (verb == "convert") != !convert.to.empty()) {
    std::cerr << "sddata: convert takes OUT and --to LAYOUT; other verbs take neither\n(see sddata --help)\n";
    return 2;
  }
  if (threads < 1) {
    std::cerr << "sddata: --threads must be >= 1, got " << threads << "\n";
    return 2;
  }
  if (vm.count("buckets") && bucket_resolution < 1) {
    std::cerr << "sddata: --buckets must be a resolution >= 1, got " << bucket_resolution << "\n";
    return 2;
  }
  try {
    if (verb == "convert") sdtrain::check_convert_target(out, convert);
    const Source source = open_source(path, config_path, from);
    if (verb == "list") return sdtrain::list_samples(*source.dataset, std::cout) == 0 ? 0 : 1;
    if (verb == "convert") {
      const sdtrain::ConvertReport report = sdtrain::convert_dataset(*source.dataset, out, convert);
      for (const std::string& skipped : report.skipped) std::cout << "skipped " << skipped << "\n";
      std::cout << "convert: " << report.written << " samples into " << report.files.size() << " file(s) in " << out
                << " (" << convert.to << ")" << (report.skipped.empty() ? "" : ", " +
                   std::to_string(report.skipped.size()) + " skipped") << "\n";
      return report.skipped.empty() ? 0 : 1;
    }
    // The bucket table before the (long) scan, so that bad bucket settings fail at once.
    std::optional<sdtrain::BucketTable> table;
    if (verb == "inspect" && (bucket_resolution > 0 || source.has_buckets)) {
      sdtrain::BucketConfig buckets = source.has_buckets ? source.buckets : sdtrain::BucketConfig();
      const int resolution = bucket_resolution > 0 ? bucket_resolution : source.resolution;
      if (bucket_resolution > 0) buckets.set_max_area(0);
      table.emplace(buckets, resolution);
    }
    sdtrain::ScanOptions scan;
    scan.threads = threads;
    scan.max_pixels = source.max_pixels;
    scan.decode = verb == "verify";
    const std::vector<sdtrain::SampleScan> scans = sdtrain::scan_samples(*source.dataset, scan);
    const sdtrain::DatasetSurvey survey = sdtrain::survey(scans);
    std::cout << source.name << "\n" << sdtrain::format_survey(survey, verb == "verify" ? SIZE_MAX : 50);
    if (verb == "verify") {
      std::cout << (survey.unreadable.empty() ? "verify: every sample decodes\n"
                                              : "verify: " + std::to_string(survey.unreadable.size()) +
                                                    " bad samples\n");
      return survey.unreadable.empty() ? 0 : 1;
    }
    if (table) std::cout << sdtrain::format_bucket_report(sdtrain::plan_buckets(scans, *table), source.global_batch);
    return 0;
  } catch (const sdtrain::ConfigError& error) {
    std::cerr << "sddata: config error: " << error.what() << "\n";
    return 2;
  } catch (const sdtrain::PluginError& error) {
    std::cerr << "sddata: plugin error: " << error.what() << "\n";
    return 2;
  } catch (const std::exception& error) {
    std::cerr << "sddata: error: " << error.what() << "\n";
    return 1;
  }
}
