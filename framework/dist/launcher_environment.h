#pragma once
/// What the launcher (mpirun, srun, mpiexec.hydra) says about this process, read from its
/// environment variables. MPI itself is the authority on rank and world size; these values are
/// checked against it so that a mis-launched job (`srun` without `--mpi=pmix`, which starts N
/// independent world-size-1 processes that would all train alone and overwrite each other's
/// checkpoints) stops at once with a message saying how to launch it.
#include <functional>
#include <optional>
#include <string>

namespace sdtrain {

struct LauncherEnvironment {
  std::string launcher;  ///< "openmpi", "pmix", "pmi", "slurm", or "" when none is detected
  std::optional<int> rank;
  std::optional<int> world_size;
  std::optional<int> local_rank;
  std::optional<int> local_world_size;
};

/// Reads the variables of the first launcher found, in this order (the first is the most
/// specific: `mpirun` inside a Slurm allocation inherits the batch step's SLURM_* variables):
///   openmpi  OMPI_COMM_WORLD_RANK, _SIZE, _LOCAL_RANK, _LOCAL_SIZE
///   pmix     PMIX_RANK (+ SLURM_STEP_NUM_TASKS / SLURM_LOCALID under `srun --mpi=pmix`)
///   pmi      PMI_RANK, PMI_SIZE, MPI_LOCALRANKID, MPI_LOCALNRANKS (MPICH's hydra)
///   slurm    SLURM_PROCID, SLURM_STEP_NUM_TASKS (else SLURM_NTASKS), SLURM_LOCALID — only
///            inside a job step (SLURM_STEP_ID set, i.e. started by srun), since a batch script
///            itself carries SLURM_PROCID=0 and the job's SLURM_NTASKS.
/// `getenv` returns nullptr for an unset variable. A set variable that is not a non-negative
/// integer throws std::runtime_error naming it.
LauncherEnvironment read_launcher_environment(const std::function<const char*(const char*)>& getenv);

/// The same from the process environment.
LauncherEnvironment read_launcher_environment();

/// Throws std::runtime_error if the launcher's rank or world size disagrees with MPI's, with the
/// variable, both values and the fix (`srun --mpi=pmix`, or start the job with mpirun).
void check_launcher_environment(const LauncherEnvironment& launcher, int mpi_rank, int mpi_world_size);

}  // namespace sdtrain
