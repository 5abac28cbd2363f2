#!/usr/bin/env bash
# Checks that the CUDA/NCCL code paths compile (warning-free) and link against the CUDA torch
# wheel, on a machine without a GPU. Run by CI as the ctest entry CudaBuild.CompilesAndLinks.
#   launch/check_cuda_build.sh [--device-targets] [BUILD_DIR]      (default: build-cuda-check/)
#
# 1. A second venv (SDTRAIN_CUDA_VENV, default .venv-cuda/, reused when present) with the CUDA
#    torch wheel (SDTRAIN_CUDA_TORCH, default torch==2.14.1) and nvidia-nccl-cu13.
# 2. A separate build directory configured against it; SDTRAIN_WITH_CUDA and SDTRAIN_WITH_NCCL
#    must come out ON.
# 3. Builds only the target nccl_gpu_tests: every source whose compilation differs with CUDA
#    (auto-detected, -Werror) plus the NCCL tests linked against the CUDA and NCCL libraries
#    (tests/nccl_gpu/CMakeLists.txt says why that is the faithful part). Nothing is run.
#    --device-targets builds instead every target launch/gpu/run_on_device.sh builds (benchmarks
#    on): with SDTRAIN_CUDA_TORCH=torch==2.11.0 (and another SDTRAIN_CUDA_VENV), the GPU
#    machines' torch, it shows here that the device's build stage will compile, since torch's C++
#    API differs between releases (docs/nccl.md). A cold build: about 40 minutes on 2 cores.
#
# Exit status: 0 built, 77 skipped (no CUDA toolkit on this machine), anything else failed.
# Environment: CUDA_HOME (default /usr/local/cuda-13.0, else /usr/local/cuda: torch's CMake
# config needs the toolkit's nvcc and headers), SDTRAIN_JOBS (default 2).
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
targets=(nccl_gpu_tests)
bench=OFF
if [[ ${1:-} == --device-targets ]]; then
  # What launch/gpu/run_on_device.sh's build stage builds (its nccl, bench and demo stages).
  # shellcheck source=launch/gpu/device_targets.sh
  source "$repo/launch/gpu/device_targets.sh"
  targets=("${device_targets_nccl[@]}" "${device_targets_bench[@]}" "${device_targets_demo[@]}")
  bench=ON
  shift
fi
build_dir=${1:-$repo/build-cuda-check}
venv=${SDTRAIN_CUDA_VENV:-$repo/.venv-cuda}
torch_pin=${SDTRAIN_CUDA_TORCH:-torch==2.14.1}
jobs=${SDTRAIN_JOBS:-2}
say() { printf '[check_cuda_build] %s\n' "$*" >&2; }
start=$SECONDS

if [[ -z ${CUDA_HOME:-} ]]; then
  for candidate in /usr/local/cuda-13.0 /usr/local/cuda; do
    [[ -x $candidate/bin/nvcc ]] && { CUDA_HOME=$candidate; break; }
  done
fi
if [[ -z ${CUDA_HOME:-} || ! -x $CUDA_HOME/bin/nvcc ]]; then
  say "SKIPPED: no CUDA toolkit (nvcc) found; set CUDA_HOME"
  exit 77  # ctest reports the check as skipped (SKIP_RETURN_CODE), not passed
fi
export CUDA_HOME CUDAToolkit_ROOT=$CUDA_HOME CUDACXX=$CUDA_HOME/bin/nvcc
export PATH=$CUDA_HOME/bin:$PATH

python=$venv/bin/python
stamp=$venv/.sdtrain-cuda-requirements
if [[ ! -f $stamp || $(cat "$stamp") != "$torch_pin" ]]; then
  say "installing $torch_pin (CUDA) and nvidia-nccl-cu13 into $venv"
  [[ -x $python ]] || python3 -m venv "$venv"
  "$python" -m pip install -q "$torch_pin" nvidia-nccl-cu13
  echo "$torch_pin" >"$stamp"
  say "venv ready after $((SECONDS - start)) s"
fi

# Torch's CMake config links CUDA::nvrtc, which a toolkit of only nvcc and cudart lacks.
mapfile -t cuda_extra < <(bash "$repo/launch/nvrtc_cmake_args.sh" "$python" "$CUDA_HOME")

export CCACHE_BASEDIR=$repo
export CCACHE_SLOPPINESS=${CCACHE_SLOPPINESS:-pch_defines,time_macros,include_file_mtime,include_file_ctime}
launcher=()
command -v ccache >/dev/null && launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache -DCMAKE_C_COMPILER_LAUNCHER=ccache)
# Configure every time (cheap once configured): the summary line proves CUDA and NCCL are ON.
say "configuring $build_dir against torch $("$python" -c 'import torch; print(torch.__version__)' 2>/dev/null)"
mkdir -p "$build_dir"
log=$build_dir/configure.log
cmake -S "$repo" -B "$build_dir" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DSDTRAIN_PYTHON="$python" \
      -DSDTRAIN_BUILD_TESTS=ON -DSDTRAIN_BUILD_BENCH=$bench "${launcher[@]}" "${cuda_extra[@]}" >"$log" 2>&1 ||
  { cat "$log" >&2; exit 1; }
if ! grep -q 'sdtrain: CUDA ON, NCCL ON' "$log"; then
  grep 'sdtrain:' "$log" >&2 || true
  say "SDTRAIN_WITH_CUDA/SDTRAIN_WITH_NCCL did not turn ON (see $log)"
  exit 1
fi
grep -E 'sdtrain: (torch|CUDA|C\+\+|[0-9]+ source)' "$log" >&2 || true
say "building ${targets[*]} ($jobs jobs)"
cmake --build "$build_dir" --target "${targets[@]}" -j "$jobs"
say "done in $((SECONDS - start)) s"
