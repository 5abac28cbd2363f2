#pragma once
/// The MPI process group: one process per GPU (or CPU rank), initialised once per process.
#include <memory>
#include <string>

namespace sdtrain {

/// Where this process stands in the job.
struct RankInfo {
  int rank = 0;              ///< global rank, 0..world_size-1
  int world_size = 1;
  int local_rank = 0;        ///< rank among the processes on this node (picks the GPU)
  int local_world_size = 1;  ///< processes on this node
  std::string launcher;      ///< "openmpi", "pmix", "pmi", "slurm" or "" (see launcher_environment.h)
};

/// Initialises MPI (thread level MPI_THREAD_SERIALIZED or better is required, since collectives
/// may be issued from autograd's threads one at a time) and finalises it on destruction. Works
/// under mpirun/srun and as a singleton (plain `sdtrain`, world size 1). The local rank comes from
/// MPI_COMM_TYPE_SHARED (the processes sharing this node), which agrees with OMPI_*, PMIX_* and
/// SLURM_* variables under every launcher. Throws std::runtime_error if MPI cannot provide the
/// thread level, or if the launcher's variables disagree with MPI's rank or world size (a job
/// started by `srun` without MPI support: see check_launcher_environment()).
/// It tells the fault points (framework/util/fault_points.h) this process's rank.
class ProcessGroup {
 public:
  ProcessGroup();
  ~ProcessGroup();
  ProcessGroup(const ProcessGroup&) = delete;
  ProcessGroup& operator=(const ProcessGroup&) = delete;

  const RankInfo& info() const { return info_; }
  /// Ends the whole job immediately (all ranks) after printing `reason` once; for errors that
  /// would otherwise leave the other ranks waiting in a collective.
  [[noreturn]] static void abort_job(const std::string& reason, int exit_code = 1);

 private:
  RankInfo info_;
  bool finalize_ = false;
};

}  // namespace sdtrain
