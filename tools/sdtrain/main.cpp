// sdtrain: fine-tunes a diffusion model as a protobuf text config describes.
//
//   mpirun -np 2 sdtrain --config configs/three_kingdoms.pbtxt [--set run.max_steps=100 ...]
//
// Exit codes: 0 success, 1 runtime failure, 2 bad config / command line / plugin library,
// 75 stopped by SIGTERM/SIGUSR1 (Slurm pre-emption) after writing a checkpoint: requeue and
// run again with --resume auto.
#include <iostream>
#include <string>
#include <vector>

#include <boost/program_options.hpp>

#include "framework/config/config_loader.h"
#include "framework/registry/plugin_loader.h"
#include "framework/registry/registry.h"
#include "framework/train/run_training.h"
#include "framework/util/fault_points.h"
#include "plugins/builtin_plugins.h"
#include "tools/sdtrain/dry_run_data.h"
#include "sdtrain/callback.h"
#include "sdtrain/dataset.h"
#include "sdtrain/errors.h"
#include "sdtrain/lr_schedule.h"
#include "sdtrain/model.h"
#include "sdtrain/noise_scheduler.h"
#include "sdtrain/version.h"

namespace po = boost::program_options;

namespace {

template <class Interface>
void list_family(const char* heading) {
  std::cout << heading << ":\n";
  for (const auto& entry : sdtrain::Registry<Interface>::instance().entries()) {
    std::cout << "  " << entry.name;
    for (std::size_t pad = entry.name.size(); pad < 18; ++pad) std::cout << ' ';
    std::cout << ' ' << entry.description << "  [" << entry.options_type->full_name() << "]";
    if (!entry.library.empty()) std::cout << "  (" << entry.library << ")";
    std::cout << "\n";
  }
}

void list_plugins() {
  list_family<sdtrain::Model>("model");
  list_family<sdtrain::Dataset>("dataset");
  list_family<sdtrain::NoiseScheduler>("scheduler (noise schedulers and samplers)");
  list_family<sdtrain::LrSchedule>("lr_schedule (scheduler family: learning-rate schedules)");
  list_family<sdtrain::Callback>("callback");
}

}  // namespace

int main(int argc, char** argv) {
  sdtrain::anchor_builtin_plugins();  // keeps the built-in plugins linked in

  po::options_description options(
      "sdtrain " SDTRAIN_VERSION_STRING
      ": data-parallel fine-tuning of Stable Diffusion v1\n\n"
      "Usage:\n"
      "  sdtrain --config FILE [--set path.to.field=value ...] [--plugin LIB ...]\n"
      "  mpirun -np N sdtrain --config FILE      (one rank per GPU, or CPU ranks)\n\n"
      "The config is a protobuf text file (sdtrain.TrainConfig, see proto/sdtrain.proto and\n"
      "docs/config-reference.md). Exit codes: 0 ok, 1 training failed, 2 bad config or usage,\n"
      "75 stopped by SIGTERM/SIGUSR1 after writing a checkpoint (requeue with --resume auto).\n\n"
      "Options");
  std::string config_path;
  std::vector<std::string> overrides;
  std::vector<std::string> plugins;
  std::string resume;
  std::vector<std::string> faults;
  int world_size = 1;
  options.add_options()
      ("help,h", "print this help and exit")
      ("version", "print the version and exit")
      ("config,c", po::value(&config_path)->value_name("FILE"), "the run's config (.pbtxt)")
      ("set,s", po::value(&overrides)->composing()->value_name("PATH=VALUE"),
       "override one scalar config field, e.g. run.max_steps=100, data.batch_size=2,\n"
       "data.train.options.root=/data/faces, callbacks[0].type=progress (repeatable;\n"
       "applied in order after the file; values are type-checked)")
      ("plugin,p", po::value(&plugins)->composing()->value_name("LIB"),
       "load an external plugin library (repeatable), in addition to the config's plugin_libraries")
      ("resume", po::value(&resume)->value_name("auto|DIR"),
       "resume from the newest checkpoint in run.output_dir (auto) or from DIR; same as --set run.resume=...")
      ("fault", po::value(&faults)->composing()->value_name("RULES"),
       "inject a failure to rehearse it, e.g. collective.before:8@rank1=stall or\n"
       "checkpoint.after_parts_write:4=crash (repeatable; added to the rules of the\n"
       "SDTRAIN_FAULTS variable; see docs/fault-injection.md)")
      ("print-config", "print the effective config (file + overrides + defaults) and exit")
      ("dry-run-data", "read the training set's image sizes, print the sample count and, with\n"
       "data.buckets, the bucket report (and write its CSV), then exit without training")
      ("world-size", po::value(&world_size)->value_name("N"),
       "with --dry-run-data: the ranks the run will have, for the global batch (default 1)")
      ("list-plugins", "print every registered plugin type per family and exit");

  po::variables_map vm;
  try {
    po::store(po::command_line_parser(argc, argv).options(options).run(), vm);
    po::notify(vm);
  } catch (const po::error& error) {
    std::cerr << "sdtrain: " << error.what() << "\n(see sdtrain --help)\n";
    return 2;
  }
  if (vm.count("help")) {
    std::cout << options << "\n";
    return 0;
  }
  if (vm.count("version")) {
    std::cout << "sdtrain " SDTRAIN_VERSION_STRING "\n";
    return 0;
  }
  try {
    if (vm.count("list-plugins")) {
      sdtrain::load_plugin_libraries(plugins);
      list_plugins();
      return 0;
    }
    if (vm.count("world-size") && !vm.count("dry-run-data")) {
      std::cerr << "sdtrain: --world-size only goes with --dry-run-data (a run's world size is the launcher's)\n";
      return 2;
    }
    if (config_path.empty()) {
      std::cerr << "sdtrain: --config FILE is required (see sdtrain --help)\n";
      return 2;
    }
    sdtrain::configure_fault_points(faults);  // a malformed rule ends the run here, before any work
    if (!resume.empty()) overrides.push_back("run.resume=" + resume);
    sdtrain::LoadedConfig loaded = sdtrain::load_train_config(config_path, overrides, plugins);
    if (vm.count("print-config")) {
      std::cout << sdtrain::config_to_text(loaded.config);
      return 0;
    }
    if (vm.count("dry-run-data")) {
      sdtrain::dry_run_data(loaded, world_size, std::cout);
      return 0;
    }
    return sdtrain::run_training(loaded);
  } catch (const sdtrain::ConfigError& error) {
    std::cerr << "sdtrain: config error: " << error.what() << "\n";
    return 2;
  } catch (const sdtrain::PluginError& error) {
    std::cerr << "sdtrain: plugin error: " << error.what() << "\n";
    return 2;
  } catch (const std::exception& error) {
    std::cerr << "sdtrain: error: " << error.what() << "\n";
    return 1;
  }
}
