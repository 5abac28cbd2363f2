#include "framework/dist/launcher_environment.h"

#include <cerrno>
#include <cstdlib>
#include <stdexcept>

namespace sdtrain {
namespace {

class Reader {
 public:
  explicit Reader(const std::function<const char*(const char*)>& getenv) : getenv_(getenv) {}

  bool has(const char* name) const { return getenv_(name) != nullptr; }

  std::optional<int> integer(const char* name) const {
    const char* text = getenv_(name);
    if (text == nullptr) return std::nullopt;
    char* end = nullptr;
    errno = 0;
    const long value = std::strtol(text, &end, 10);
    if (*text == '\0' || *end != '\0' || errno != 0 || value < 0 || value > 1L << 30) {
      throw std::runtime_error(std::string("environment variable ") + name + "='" + text +
                               "' is not a non-negative integer (set by the launcher?)");
    }
    return static_cast<int>(value);
  }

  template <class... Names>
  std::optional<int> first(const char* name, Names... others) const {
    if (auto value = integer(name)) return value;
    if constexpr (sizeof...(others) > 0) {
      return first(others...);
    } else {
      return std::nullopt;
    }
  }

 private:
  const std::function<const char*(const char*)>& getenv_;
};

}  // namespace

LauncherEnvironment read_launcher_environment(const std::function<const char*(const char*)>& getenv) {
  const Reader env(getenv);
  LauncherEnvironment out;
  const bool slurm_step = env.has("SLURM_STEP_ID");
  if (env.has("OMPI_COMM_WORLD_RANK")) {
    out.launcher = "openmpi";
    out.rank = env.integer("OMPI_COMM_WORLD_RANK");
    out.world_size = env.integer("OMPI_COMM_WORLD_SIZE");
    out.local_rank = env.integer("OMPI_COMM_WORLD_LOCAL_RANK");
    out.local_world_size = env.integer("OMPI_COMM_WORLD_LOCAL_SIZE");
  } else if (env.has("PMIX_RANK")) {
    out.launcher = "pmix";
    out.rank = env.integer("PMIX_RANK");
    if (slurm_step) {
      out.world_size = env.first("SLURM_STEP_NUM_TASKS", "SLURM_NTASKS");
      out.local_rank = env.integer("SLURM_LOCALID");
    }
  } else if (env.has("PMI_RANK")) {
    out.launcher = "pmi";
    out.rank = env.integer("PMI_RANK");
    out.world_size = env.integer("PMI_SIZE");
    out.local_rank = env.integer("MPI_LOCALRANKID");
    out.local_world_size = env.integer("MPI_LOCALNRANKS");
  } else if (slurm_step && env.has("SLURM_PROCID")) {
    out.launcher = "slurm";
    out.rank = env.integer("SLURM_PROCID");
    out.world_size = env.first("SLURM_STEP_NUM_TASKS", "SLURM_NTASKS");
    out.local_rank = env.integer("SLURM_LOCALID");
  }
  return out;
}

LauncherEnvironment read_launcher_environment() {
  return read_launcher_environment([](const char* name) -> const char* { return std::getenv(name); });
}

void check_launcher_environment(const LauncherEnvironment& launcher, int mpi_rank, int mpi_world_size) {
  if (launcher.launcher.empty()) return;
  const std::string fix =
      launcher.launcher == "slurm" || launcher.launcher == "pmix"
          ? "MPI did not see the srun job step: launch with `srun --mpi=pmix` (see `srun --mpi=list`) or run "
            "mpirun inside the allocation (launch/slurm/sdtrain.sbatch does either)"
          : "the MPI library sdtrain was built with is not the launcher's: use the matching mpirun";
  if (launcher.world_size && *launcher.world_size != mpi_world_size) {
    throw std::runtime_error("the launcher (" + launcher.launcher + ") started " +
                             std::to_string(*launcher.world_size) + " processes but MPI sees a world of " +
                             std::to_string(mpi_world_size) + "; " + fix);
  }
  if (launcher.rank && *launcher.rank != mpi_rank) {
    throw std::runtime_error("the launcher (" + launcher.launcher + ") says rank " + std::to_string(*launcher.rank) +
                             " but MPI says rank " + std::to_string(mpi_rank) + "; " + fix);
  }
}

}  // namespace sdtrain
