// Runs verify_same_parameters under mpirun: every rank builds the same parameters, the rank named
// by argv[1] (-1: none) flips one bit of its copy, and each rank prints what the check said.
//   mpirun -np N parameter_check_probe RANK_TO_PERTURB
#include <cstdio>
#include <cstdlib>
#include <exception>

#include <torch/torch.h>

#include "framework/dist/communicator.h"
#include "framework/dist/parameter_check.h"
#include "framework/dist/process_group.h"

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: parameter_check_probe RANK_TO_PERTURB\n");
    return 2;
  }
  const int perturbed = std::atoi(argv[1]);
  sdtrain::ProcessGroup group;
  auto communicator = sdtrain::make_mpi_communicator(group.info(), 60.0);
  torch::manual_seed(3);
  torch::Tensor values = torch::randn({100003});
  if (group.info().rank == perturbed) {
    // The smallest possible difference: the lowest mantissa bit of one element.
    int32_t* bits = reinterpret_cast<int32_t*>(values.data_ptr<float>());
    bits[77777] ^= 1;
  }
  try {
    sdtrain::verify_same_parameters(values, *communicator, "in the probe");
    std::printf("rank %d: ok\n", group.info().rank);
  } catch (const std::exception& error) {
    std::printf("rank %d: error: %s\n", group.info().rank, error.what());
  }
  std::fflush(stdout);
  communicator->barrier();
  return 0;
}
