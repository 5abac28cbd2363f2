#include "framework/dist/communicator_factory.h"

#include "sdtrain/errors.h"

#ifdef SDTRAIN_WITH_NCCL
#include "framework/dist/nccl_communicator.h"
#endif

namespace sdtrain {

bool nccl_compiled_in() {
#ifdef SDTRAIN_WITH_NCCL
  return true;
#else
  return false;
#endif
}

std::unique_ptr<Communicator> make_communicator(CommunicatorBackend requested, const RankInfo& info,
                                                const torch::Device& device, double timeout_s) {
  switch (requested) {
    case CommunicatorBackend::kMpi:
      return make_mpi_communicator(info, timeout_s);
    case CommunicatorBackend::kAuto:
      if (!device.is_cuda() || !nccl_compiled_in()) return make_mpi_communicator(info, timeout_s);
      break;
    case CommunicatorBackend::kNccl:
      if (!nccl_compiled_in()) {
        throw ConfigError(
            "distributed.backend: NCCL was requested, but this sdtrain was built without NCCL (it needs a "
            "torch with CUDA and the NCCL library at configure time); use AUTO or MPI");
      }
      if (!device.is_cuda()) {
        throw ConfigError("distributed.backend: NCCL needs a CUDA device, but this rank trains on " + device.str() +
                          " (run.device); use AUTO or MPI");
      }
      break;
  }
#ifdef SDTRAIN_WITH_NCCL
  return make_nccl_communicator(info, device, timeout_s);
#else
  throw ConfigError("distributed.backend: NCCL is not compiled in");  // unreachable: checked above
#endif
}

}  // namespace sdtrain
