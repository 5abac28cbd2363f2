// A .ckpt (torch.save's zip with the restricted unpickler), read from a file as the product reads
// it (mapped); every tensor of the state dict is read in full, so a view outside its storage would
// be found. Bad input must end in FormatError.
#include <unistd.h>

#include <fstream>
#include <string>

#include <torch/torch.h>

#include "framework/io/ckpt_reader.h"
#include "sdtrain/errors.h"
#include "tests/fuzz/fuzz_target.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static const std::string path = "/tmp/sdtrain-ckpt-fuzz-" + std::to_string(::getpid()) + ".ckpt";
  {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out.write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(size));
  }
  try {
    for (const auto& [name, tensor] : sdtrain::load_ckpt_state_dict(path)) {
      if (tensor.numel() > 0 && tensor.is_floating_point()) tensor.sum().item<double>();
      if (tensor.numel() > 0 && !tensor.is_floating_point()) tensor.to(torch::kInt64).sum().item<int64_t>();
    }
  } catch (const sdtrain::FormatError&) {
  }
  return 0;
}
