#include "framework/dist/parameter_check.h"

#include <algorithm>
#include <cstring>
#include <sstream>
#include <stdexcept>
#include <vector>

namespace sdtrain {
namespace {

constexpr uint64_t kFnvOffset = 0xcbf29ce484222325ULL;
constexpr uint64_t kFnvPrime = 0x100000001b3ULL;

uint64_t mix(uint64_t hash, uint64_t word) { return (hash ^ word) * kFnvPrime; }

uint64_t hash_bytes(uint64_t hash, const unsigned char* bytes, size_t size) {
  size_t i = 0;
  for (; i + 8 <= size; i += 8) {
    uint64_t word;
    std::memcpy(&word, bytes + i, 8);
    hash = mix(hash, word);
  }
  for (; i < size; ++i) hash = mix(hash, bytes[i]);
  return hash;
}

std::string hex(uint64_t value) {
  std::ostringstream text;
  text << "0x" << std::hex << value;
  return text.str();
}

}  // namespace

uint64_t tensor_bytes_hash(const torch::Tensor& tensor, int64_t chunk_bytes) {
  torch::NoGradGuard no_grad;
  const torch::Tensor flat = tensor.contiguous().reshape({-1});
  uint64_t hash = mix(mix(kFnvOffset, static_cast<uint64_t>(flat.scalar_type())), static_cast<uint64_t>(flat.numel()));
  // Chunks of a multiple of 8 elements are a multiple of 8 bytes, so the hash does not depend
  // on the chunk size (the words fall at the same offsets).
  const int64_t chunk = std::max<int64_t>(8, chunk_bytes / static_cast<int64_t>(flat.element_size()) / 8 * 8);
  for (int64_t start = 0; start < flat.numel(); start += chunk) {
    const torch::Tensor part = flat.narrow(0, start, std::min(chunk, flat.numel() - start)).to(torch::kCPU).contiguous();
    hash = hash_bytes(hash, static_cast<const unsigned char*>(part.data_ptr()), part.nbytes());
  }
  return hash;
}

void verify_same_parameters(const torch::Tensor& values, Communicator& communicator, const std::string& when) {
  const int world = communicator.world_size();
  if (world == 1) return;  // nothing to compare; hashing the UNet costs seconds
  torch::Tensor hashes = torch::zeros({world}, torch::kInt64);
  const uint64_t mine = tensor_bytes_hash(values);
  int64_t as_signed;
  std::memcpy(&as_signed, &mine, sizeof(mine));
  hashes[communicator.rank()] = as_signed;
  // Every slot but one is zero on each rank, so the integer sum is an exact all-gather.
  communicator.allreduce_sum(hashes);
  const int64_t* gathered = hashes.data_ptr<int64_t>();
  std::vector<int> differing;
  for (int r = 1; r < world; ++r) {
    if (gathered[r] != gathered[0]) differing.push_back(r);
  }
  if (differing.empty()) return;
  std::ostringstream message;
  message << "parameter check " << when << ": rank" << (differing.size() > 1 ? "s" : "");
  for (size_t i = 0; i < differing.size(); ++i) message << (i ? ", " : " ") << differing[i];
  message << " hold" << (differing.size() > 1 ? "" : "s") << " parameters different from rank 0's (hash ";
  uint64_t first, theirs;
  std::memcpy(&first, &gathered[0], sizeof(first));
  std::memcpy(&theirs, &gathered[differing[0]], sizeof(theirs));
  message << hex(theirs) << " on rank " << differing[0] << ", " << hex(first)
          << " on rank 0); the ranks would train different models, so the job stops";
  throw std::runtime_error(message.str());
}

}  // namespace sdtrain
