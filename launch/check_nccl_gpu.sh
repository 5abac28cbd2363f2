#!/usr/bin/env bash
# On a machine with a GPU: builds the NCCL tests against the torch that is installed there and
# runs them at world size 1 (a real one-rank NCCL communicator): allreduce/broadcast of
# float32/float16/bfloat16/float64/int64 each ordered behind a long kernel on the compute stream
# (blocking and asynchronous), barrier, CPU tensors through MPI, refusals, a second communicator
# torn down beside the first, the parameter hash on the device, a collective timeout that must
# abort naming rank and collective (alone, by launch/gpu/run_nccl_tests.sh), and the world-size-1
# time of allreducing a UNet's gradients in 25/100/200 MB buckets.
#   launch/check_nccl_gpu.sh [BUILD_DIR]      (default: build-gpu/)
# Environment: SDTRAIN_PYTHON (python with CUDA torch; default: python3), CUDA_HOME (toolkit
# with nvcc, needed by torch's CMake config; default /usr/local/cuda), SDTRAIN_JOBS.
# Prints the test report; the XML files land in BUILD_DIR (nccl_gpu_*.xml).
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build_dir=${1:-$repo/build-gpu}
python=${SDTRAIN_PYTHON:-python3}
jobs=${SDTRAIN_JOBS:-$(nproc)}
say() { printf '[check_nccl_gpu] %s\n' "$*" >&2; }
start=$SECONDS

export CUDA_HOME=${CUDA_HOME:-/usr/local/cuda}
export CUDAToolkit_ROOT=$CUDA_HOME CUDACXX=$CUDA_HOME/bin/nvcc PATH=$CUDA_HOME/bin:$PATH
"$python" -c 'import torch, sys; print("torch", torch.__version__, "cuda", torch.version.cuda, "gpus", torch.cuda.device_count()); sys.exit(0 if torch.cuda.is_available() else 1)' ||
  { say "$python has no CUDA torch or sees no GPU"; exit 1; }
nvidia-smi -L || true

# Torch's CMake config links CUDA::nvrtc, which a toolkit of only nvcc and cudart lacks.
mapfile -t cuda_extra < <(bash "$repo/launch/nvrtc_cmake_args.sh" "$python" "$CUDA_HOME")

mkdir -p "$build_dir"
cmake -S "$repo" -B "$build_dir" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DSDTRAIN_PYTHON="$python" \
      -DSDTRAIN_BUILD_TESTS=ON -DSDTRAIN_BUILD_BENCH=OFF "${cuda_extra[@]}" >"$build_dir/configure.log" 2>&1 ||
  { tail -40 "$build_dir/configure.log" >&2; say "configure failed (Debian packages missing? see launch/setup.sh)"; exit 1; }
grep 'sdtrain:' "$build_dir/configure.log" >&2
grep -q 'sdtrain: CUDA ON, NCCL ON' "$build_dir/configure.log" || { say "CUDA/NCCL not ON"; exit 1; }
cmake --build "$build_dir" --target nccl_gpu_tests -j "$jobs"
say "built in $((SECONDS - start)) s; running"
bash "$repo/launch/gpu/run_nccl_tests.sh" "$build_dir"
say "all NCCL world-size-1 tests passed in $((SECONDS - start)) s"
