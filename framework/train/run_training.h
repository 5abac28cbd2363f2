#pragma once
/// The body of `sdtrain`: sets up the process group, builds the plugins and fits.
#include "framework/config/config_loader.h"

namespace sdtrain {

/// Runs a whole training job for a loaded, validated config on this rank (MPI is initialised
/// and finalised here). Returns the process exit code: 0 on success, kStopSignalExitCode (75,
/// framework/dist/stop_signal.h) when SIGTERM/SIGUSR1 stopped the run after a checkpoint. Throws
/// on errors that the caller reports (ConfigError → exit 2).
int run_training(const LoadedConfig& loaded);

}  // namespace sdtrain
