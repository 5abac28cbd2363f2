// Rank and world size as Open MPI, PMIx (srun --mpi=pmix), MPICH's hydra and plain srun set them,
// and the check that refuses a launch whose processes MPI does not see as one job.
#include <gtest/gtest.h>

#include <map>

#include "framework/dist/launcher_environment.h"

namespace sdtrain {
namespace {

LauncherEnvironment read(const std::map<std::string, std::string>& variables) {
  return read_launcher_environment([&](const char* name) -> const char* {
    const auto found = variables.find(name);
    return found == variables.end() ? nullptr : found->second.c_str();
  });
}

TEST(LauncherEnvironment, NoneOutsideALauncher) {
  EXPECT_EQ(read({}).launcher, "");
  // A batch script carries SLURM_PROCID=0 and the job's task count, but it is no job step.
  const auto batch = read({{"SLURM_PROCID", "0"}, {"SLURM_NTASKS", "16"}, {"SLURM_JOB_ID", "42"}});
  EXPECT_EQ(batch.launcher, "");
  EXPECT_NO_THROW(check_launcher_environment(batch, 0, 1));
}

TEST(LauncherEnvironment, OpenMpiWinsOverTheSlurmVariablesItInherits) {
  const auto env = read({{"OMPI_COMM_WORLD_RANK", "5"},
                         {"OMPI_COMM_WORLD_SIZE", "8"},
                         {"OMPI_COMM_WORLD_LOCAL_RANK", "1"},
                         {"OMPI_COMM_WORLD_LOCAL_SIZE", "4"},
                         {"PMIX_RANK", "5"},
                         {"SLURM_STEP_ID", "0"},
                         {"SLURM_PROCID", "0"},
                         {"SLURM_NTASKS", "2"}});
  EXPECT_EQ(env.launcher, "openmpi");
  EXPECT_EQ(env.rank, 5);
  EXPECT_EQ(env.world_size, 8);
  EXPECT_EQ(env.local_rank, 1);
  EXPECT_EQ(env.local_world_size, 4);
}

TEST(LauncherEnvironment, SrunWithPmix) {
  const auto env = read({{"PMIX_RANK", "3"},
                         {"SLURM_STEP_ID", "0"},
                         {"SLURM_PROCID", "3"},
                         {"SLURM_NTASKS", "16"},
                         {"SLURM_STEP_NUM_TASKS", "4"},
                         {"SLURM_LOCALID", "1"}});
  EXPECT_EQ(env.launcher, "pmix");
  EXPECT_EQ(env.rank, 3);
  EXPECT_EQ(env.world_size, 4) << "the step's task count, not the job's";
  EXPECT_EQ(env.local_rank, 1);
  EXPECT_FALSE(env.local_world_size.has_value());
}

TEST(LauncherEnvironment, HydraPmi) {
  const auto env = read({{"PMI_RANK", "2"}, {"PMI_SIZE", "3"}, {"MPI_LOCALRANKID", "0"}, {"MPI_LOCALNRANKS", "1"}});
  EXPECT_EQ(env.launcher, "pmi");
  EXPECT_EQ(env.rank, 2);
  EXPECT_EQ(env.world_size, 3);
  EXPECT_EQ(env.local_rank, 0);
  EXPECT_EQ(env.local_world_size, 1);
}

TEST(LauncherEnvironment, PlainSrunStep) {
  const auto env = read({{"SLURM_STEP_ID", "1"}, {"SLURM_PROCID", "7"}, {"SLURM_NTASKS", "8"}, {"SLURM_LOCALID", "3"}});
  EXPECT_EQ(env.launcher, "slurm");
  EXPECT_EQ(env.rank, 7);
  EXPECT_EQ(env.world_size, 8);
  EXPECT_EQ(env.local_rank, 3);
}

TEST(LauncherEnvironment, MalformedVariableIsNamed) {
  try {
    read({{"OMPI_COMM_WORLD_RANK", "x1"}});
    FAIL() << "expected an error";
  } catch (const std::runtime_error& error) {
    EXPECT_NE(std::string(error.what()).find("OMPI_COMM_WORLD_RANK='x1'"), std::string::npos) << error.what();
  }
  EXPECT_THROW(read({{"PMI_RANK", "-1"}}), std::runtime_error);
}

TEST(LauncherEnvironment, MismatchWithMpiIsRefusedWithTheFix) {
  const auto srun = read({{"SLURM_STEP_ID", "0"}, {"SLURM_PROCID", "1"}, {"SLURM_STEP_NUM_TASKS", "2"}});
  EXPECT_NO_THROW(check_launcher_environment(srun, 1, 2));
  try {
    check_launcher_environment(srun, 0, 1);
    FAIL() << "expected an error";
  } catch (const std::runtime_error& error) {
    const std::string message = error.what();
    EXPECT_NE(message.find("the launcher (slurm) started 2 processes but MPI sees a world of 1"), std::string::npos)
        << message;
    EXPECT_NE(message.find("srun --mpi=pmix"), std::string::npos) << message;
  }
  const auto ompi = read({{"OMPI_COMM_WORLD_RANK", "1"}, {"OMPI_COMM_WORLD_SIZE", "2"}});
  EXPECT_THROW(check_launcher_environment(ompi, 0, 2), std::runtime_error);
}

}  // namespace
}  // namespace sdtrain
