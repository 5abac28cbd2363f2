#include "framework/dist/process_group.h"

#include "framework/dist/launcher_environment.h"
#include "framework/util/fault_points.h"

#include <mpi.h>

#include <iostream>
#include <stdexcept>

namespace sdtrain {

ProcessGroup::ProcessGroup() {
  // The launcher's variables as it set them: MPI_Init may add its own (a singleton Open MPI
  // process sets PMIX_RANK for itself).
  const LauncherEnvironment launcher = read_launcher_environment();
  int initialized = 0;
  MPI_Initialized(&initialized);
  if (!initialized) {
    int provided = 0;
    MPI_Init_thread(nullptr, nullptr, MPI_THREAD_SERIALIZED, &provided);
    finalize_ = true;
    if (provided < MPI_THREAD_SERIALIZED) {
      throw std::runtime_error("MPI provides thread level " + std::to_string(provided) +
                               ", sdtrain needs MPI_THREAD_SERIALIZED");
    }
  }
  MPI_Comm_rank(MPI_COMM_WORLD, &info_.rank);
  MPI_Comm_size(MPI_COMM_WORLD, &info_.world_size);
  set_fault_point_rank(info_.rank);  // for fault rules with @rank
  MPI_Comm node;
  MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, info_.rank, MPI_INFO_NULL, &node);
  MPI_Comm_rank(node, &info_.local_rank);
  MPI_Comm_size(node, &info_.local_world_size);
  MPI_Comm_free(&node);
  info_.launcher = launcher.launcher;
  try {
    check_launcher_environment(launcher, info_.rank, info_.world_size);
  } catch (...) {
    if (finalize_) MPI_Finalize();  // the destructor does not run for a throwing constructor
    throw;
  }
}

ProcessGroup::~ProcessGroup() {
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (finalize_ && !finalized) MPI_Finalize();
}

void ProcessGroup::abort_job(const std::string& reason, int exit_code) {
  std::cerr << reason << std::endl;
  int initialized = 0;
  MPI_Initialized(&initialized);
  if (initialized) MPI_Abort(MPI_COMM_WORLD, exit_code);
  std::_Exit(exit_code);
}

}  // namespace sdtrain
