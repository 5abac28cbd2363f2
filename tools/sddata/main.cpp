// sddata: looks at a training set before a run spends GPU hours on it.
//
//   sddata inspect (PATH | --config FILE) [--buckets RESOLUTION]
//   sddata verify  (PATH | --config FILE)
//
// PATH is an image folder (image_folder: metadata.csv / metadata.jsonl, empty captions allowed so
// that they can be counted); --config takes data.train of a run's config, any dataset plugin, with
// its data.bad_data pixel limit and, for inspect, its data.buckets. inspect reads every image's
// header: the sample count, empty captions, unreadable samples, sizes and an aspect histogram,
// and the bucket report (kohya's rules; batches of the config's data.batch_size on one rank, else
// of 1) with --buckets or the config's buckets. verify decodes
// every image in full and lists those that fail. Exit codes: 0 ok, 1 verify found bad samples or
// the data could not be read, 2 bad usage or config.
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
#include "plugins/datasets/datasets.pb.h"
#include "sdtrain/dataset.h"
#include "sdtrain/errors.h"

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

Source open_source(const std::string& path, const std::string& config_path) {
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
  sdtrain::ImageFolderOptions options;
  options.set_root(path);
  options.set_allow_empty_captions(true);
  sdtrain::PluginSpec spec;
  spec.set_type("image_folder");
  spec.mutable_options()->PackFrom(options);
  source.dataset = sdtrain::Registry<sdtrain::Dataset>::instance().create(spec, context, "image folder");
  source.name = path;
  return source;
}

}  // namespace

int main(int argc, char** argv) {
  sdtrain::anchor_builtin_plugins();
  po::options_description options(
      "sddata: inspect or verify a training set\n\n"
      "Usage:\n"
      "  sddata inspect (PATH | --config FILE) [--buckets RESOLUTION]\n"
      "  sddata verify  (PATH | --config FILE)\n\n"
      "PATH is an image folder (metadata.csv or metadata.jsonl); --config reads data.train of a run's\n"
      "config (any dataset plugin). inspect reads the image headers: count, empty captions, unreadable\n"
      "samples, sizes, aspect histogram, and the bucket report with --buckets or the config's\n"
      "data.buckets. verify decodes every image and lists the bad ones. Exit codes: 0 ok, 1 bad samples\n"
      "found by verify or unreadable data, 2 bad usage or config.\n\n"
      "Options");
  std::string verb;
  std::string path;
  std::string config_path;
  int bucket_resolution = 0;
  int threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  options.add_options()
      ("help,h", "print this help and exit")
      ("config,c", po::value(&config_path)->value_name("FILE"), "take data.train of this run config")
      ("buckets", po::value(&bucket_resolution)->value_name("RESOLUTION"),
       "inspect: the bucket report for buckets of RESOLUTION^2 area (sides 256..1024, step 64)")
      ("threads", po::value(&threads)->value_name("N"), "reading threads (default: the cores)");
  po::options_description positional_options;
  positional_options.add_options()("verb", po::value(&verb))("path", po::value(&path));
  po::positional_options_description positional;
  positional.add("verb", 1).add("path", 1);
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
  if ((verb != "inspect" && verb != "verify") || path.empty() == config_path.empty() ||
      (verb == "verify" && bucket_resolution != 0)) {
    std::cerr << "sddata: expected `inspect` or `verify` with a PATH or --config FILE (not both); --buckets "
                 "only with inspect\n(see sddata --help)\n";
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
    const Source source = open_source(path, config_path);
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
