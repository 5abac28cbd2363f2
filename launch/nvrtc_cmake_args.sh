#!/usr/bin/env bash
# Prints the CMake arguments (one per line, none when not needed) that complete a CUDA toolkit
# installed without libnvrtc (only nvcc and cudart, as on the CI machine and the lent GPU
# machines): torch's CMake config links CUDA::nvrtc, taken then from the nvidia-cuda-nvrtc wheel
# that the CUDA torch depends on.
#   mapfile -t cuda_extra < <(bash launch/nvrtc_cmake_args.sh PYTHON CUDA_HOME)
set -euo pipefail
python=${1:?usage: nvrtc_cmake_args.sh PYTHON CUDA_HOME}
cuda_home=${2:?usage: nvrtc_cmake_args.sh PYTHON CUDA_HOME}
compgen -G "$cuda_home/lib64/libnvrtc.so*" >/dev/null && exit 0
nvrtc=$("$python" -c 'import glob, os, nvidia; hits = [h for p in nvidia.__path__ for h in sorted(glob.glob(os.path.join(p, "*", "lib", "libnvrtc.so.*")))]; print(hits[0] if hits else "", end="")' 2>/dev/null || true)
[[ -n $nvrtc ]] && printf '%s\n' "-DCUDA_nvrtc_LIBRARY=$nvrtc" "-DCUDA_NVRTC_LIB=$nvrtc"
exit 0
