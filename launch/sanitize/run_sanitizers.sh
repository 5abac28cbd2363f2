#!/usr/bin/env bash
# Builds sdtrain with sanitizers and runs the tests under them (not part of CI's time budget; the
# figures and findings are in docs/reliability.md).
#
#   launch/sanitize/run_sanitizers.sh asan [CTEST_ARGS...]   AddressSanitizer + UndefinedBehaviorSanitizer:
#                                                            the whole suite (build-asan/)
#   launch/sanitize/run_sanitizers.sh tsan [CTEST_ARGS...]   ThreadSanitizer: the threaded parts
#                                                            (build-tsan/)
#
# asan builds everything with -fsanitize=address,undefined (SDTRAIN_SANITIZE, CMakeLists.txt) and
# runs every test; UBSan stops at its first report, so a finding fails its test. tsan builds the
# test programs of the threaded parts with -fsanitize=thread and runs those tests: the data
# loader's workers and prefetch thread, the bucket sampler, the gradient reducer's autograd hooks
# and MPI progress, the stop-signal handler and the stop-flag exchange, the flight recorder's
# publishing thread, checkpoint writing, the mapped file's holds, and 2-rank training under mpirun.
#
# Suppressions (launch/sanitize/*.supp) name third-party code only, each with its reason.
# CudaBuild is left out: it compiles the CUDA sources with nvcc-free flags and runs nothing.
# Results: build-<kind>/sanitize-results/ctest.log (every test's output) and summary.txt.
# Exit status: ctest's (0 when every test passed clean).
# Environment: SDTRAIN_PYTHON (default .venv/bin/python), SDTRAIN_JOBS (default: cores).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
here=$root/launch/sanitize
kind=${1:-}
[[ $# -gt 0 ]] && shift
python=${SDTRAIN_PYTHON:-$root/.venv/bin/python}
cores=$(nproc)  # before OMP_NUM_THREADS=1 below, which nproc obeys
jobs=${SDTRAIN_JOBS:-$cores}

case "$kind" in
  asan)
    sanitize=address,undefined
    targets=(all)
    tests=(-E '^CudaBuild')
    # Leak checks stay on (suppressed only in third-party libraries); the container-overflow check
    # is off because LibTorch's and protobuf's std::vector code is not instrumented and would report
    # false overflows on vectors shared with ours. Leak stacks are unwound fully (slower) because
    # the fast unwinder stops at the first uninstrumented frame, so Open MPI's leaks would show no
    # library for the suppressions to match.
    export ASAN_OPTIONS=detect_leaks=1:detect_container_overflow=0:fast_unwind_on_malloc=0:abort_on_error=0:strict_init_order=1
    # use_tls=0: LeakSanitizer's stop-the-world tracer crashes ("Tracer caught signal 11") while
    # it scans the dynamic thread-local storage of sdtrain's processes (dlopen'ed plugins, Open
    # MPI's threads), failing a finished run at exit; thread-local storage is then not a root,
    # and the one allocation referenced only from there (libgomp's per-thread ICVs) is suppressed.
    export LSAN_OPTIONS=suppressions=$here/lsan.supp:print_suppressions=0:use_tls=0
    export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
    ;;
  tsan)
    sanitize=thread
    targets=(data_tests train_tests dist_tests dist_check_tests mpi_tests resilience_tests atomic_file_tests io_test
             sdtrain sdtrain_test_plugins)
    tests=(-R '^(DataLoader|BucketLoader|BucketSampler|ImageFolderDataset|Trainer|StopSignal|StopFlagExchange|StopFlagUnderMpirun|FlightRecorder|GradientReducer|MpiTraining|Resilience|AtomicFile|MappedFile)\.')
    export TSAN_OPTIONS=suppressions=$here/tsan.supp:halt_on_error=0:exitcode=66:second_deadlock_stack=1:print_suppressions=0
    ;;
  *)
    echo "usage: run_sanitizers.sh asan|tsan [ctest arguments...]" >&2
    exit 2
    ;;
esac

build=$root/build-$kind
export CCACHE_BASEDIR=$root
export CCACHE_SLOPPINESS=${CCACHE_SLOPPINESS:-pch_defines,time_macros,include_file_mtime,include_file_ctime}
if [[ ! -f $build/build.ninja ]]; then
  # -O1: the sanitizers' usual level (stack traces stay readable, run time stays close to -O2).
  cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
        -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O1 -g1 -DNDEBUG" -DCMAKE_C_FLAGS_RELWITHDEBINFO="-O1 -g1 -DNDEBUG" \
        -DSDTRAIN_SANITIZE="$sanitize" -DSDTRAIN_BUILD_BENCH=OFF -DSDTRAIN_PYTHON="$python" \
        -DCMAKE_CXX_COMPILER_LAUNCHER=ccache -DCMAKE_C_COMPILER_LAUNCHER=ccache >/dev/null
fi
ninja -C "$build" -j "$jobs" "${targets[@]}"

results=$build/sanitize-results
mkdir -p "$results"
# OpenMP threads off: LibTorch's OpenMP runtime is not instrumented, and TSan cannot see its
# barriers (every intra-op parallel loop would be a false race); the tests run one thread anyway.
export OMP_NUM_THREADS=1
status=0
(cd "$build" && ctest -j 2 --timeout 1800 --output-on-failure "${tests[@]}" "$@") >"$results/ctest.log" 2>&1 || status=$?
{
  echo "$(date -u +%F) $kind ($sanitize), $cores cores: ctest exit $status"
  grep -E '^(100% tests passed|[0-9]+% tests passed|Total Test time)' "$results/ctest.log" || true
  grep -E 'ERROR: (Address|Leak|Thread)Sanitizer|WARNING: ThreadSanitizer|runtime error:' "$results/ctest.log" |
    sed 's/==[0-9]*==//' | sort | uniq -c | sort -rn | head -20 || true
} | tee "$results/summary.txt"
exit $status
