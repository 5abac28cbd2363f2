#include "framework/train/run_training.h"

#include <filesystem>

#include "framework/dist/communicator_factory.h"
#include "framework/dist/device_choice.h"
#include "framework/dist/process_group.h"
#include "framework/dist/stop_signal.h"
#include "framework/log/logger.h"
#include "framework/train/trainer.h"
#include "sdtrain/errors.h"

namespace sdtrain {
namespace fs = std::filesystem;

namespace {

CommunicatorBackend communicator_backend(DistributedConfig::Backend backend) {
  switch (backend) {
    case DistributedConfig::MPI: return CommunicatorBackend::kMpi;
    case DistributedConfig::NCCL: return CommunicatorBackend::kNccl;
    case DistributedConfig::AUTO: break;
  }
  return CommunicatorBackend::kAuto;
}

}  // namespace

int run_training(const LoadedConfig& loaded) {
  // From here on SIGTERM/SIGUSR1 mean "checkpoint at the next step boundary and exit" (installed
  // first, so that a pre-emption signal arriving during start-up is not fatal).
  StopSignalHandler stop_signals;
  ProcessGroup group;
  const RankInfo& info = group.info();
  LogOptions log;
  log.rank = info.rank;
  log.world_size = info.world_size;
  const fs::path logs = fs::path(resolve_config_path(loaded.base_dir, loaded.config.run().output_dir())) / "logs";
  // An output folder that cannot be made is the config's fault: named, before any work.
  if (std::error_code error; !fs::create_directories(logs, error) && error) {
    throw ConfigError("run.output_dir: cannot create " + logs.string() + ": " + error.message());
  }
  char name[64];
  std::snprintf(name, sizeof(name), "rank-%05d.log", info.rank);
  log.file = (logs / name).string();
  configure_logging(log);
  SDTRAIN_LOG(INFO) << "sdtrain: " << info.world_size << " rank(s)"
                    << (info.launcher.empty() ? std::string() : " started by " + info.launcher)
                    << "; effective config:\n"
                    << config_to_text(loaded.config);

  std::unique_ptr<Communicator> communicator;
  bool stopped_by_signal = false;
  try {
    const torch::Device device = pick_device(loaded.config.run().device(), info.local_rank);
    make_current_device(device);
    const RunConfig& run = loaded.config.run();
    apply_cuda_math_settings(device, run.allow_tf32(), run.cudnn_benchmark());
    if (device.is_cuda()) {
      SDTRAIN_LOG(INFO) << "CUDA math: TF32 " << (run.allow_tf32() ? "on" : "off") << ", cuDNN benchmark "
                        << (run.cudnn_benchmark() ? "on" : "off");
    }
    communicator = make_communicator(communicator_backend(loaded.config.distributed().backend()), info, device,
                                     loaded.config.distributed().collective_timeout_s());
    SDTRAIN_LOG(INFO) << "collectives: " << communicator->backend();
    Trainer trainer(loaded, info, *communicator, device);
    trainer.fit();
    stopped_by_signal = trainer.stopped_by_signal();
  } catch (const std::exception& error) {
    // One rank failing must not leave the others waiting in a collective: end the whole job,
    // printing the reason once (from the failing rank).
    const bool config_error = dynamic_cast<const ConfigError*>(&error) != nullptr;
    log_line(LogLevel::ERROR, std::string(config_error ? "config error: " : "error: ") + error.what(), true);
    if (info.world_size == 1) throw;
    ProcessGroup::abort_job("sdtrain: rank " + std::to_string(info.rank) + " failed; aborting the job",
                            config_error ? 2 : 1);
  }
  if (stopped_by_signal) {
    SDTRAIN_LOG(INFO) << "stopped by signal " << received_stop_signal() << " (on this or another rank) after "
                      << "writing a checkpoint; exit code " << kStopSignalExitCode << " asks for a requeue";
    return kStopSignalExitCode;
  }
  SDTRAIN_LOG(INFO) << "training finished";
  return 0;
}

}  // namespace sdtrain
