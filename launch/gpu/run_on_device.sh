#!/usr/bin/env bash
# Run THERE, on the lent GPU machine (one H100/H200, 16 cores, Ubuntu 24.04-like, no internet,
# python3 with CUDA torch but without diffusers and without the Debian -dev packages sdtrain builds
# against), from the repository root, with .device-bundle/ carried (made here by
# launch/gpu/fetch_bundle.sh). The run tool call:
#   run(command="bash launch/gpu/run_on_device.sh", carry=[".device-bundle"], timeout_s=600)
#
#   bash launch/gpu/run_on_device.sh [--quick] [--stages nccl,bench,demo] [--fresh] [--dry-run]
#   bash launch/gpu/run_on_device.sh --configure-only
#
# The stages and the time each is expected to take on a 16-core H100/H200 machine from a cold
# build are the table `plan` below (`--dry-run` prints them with their total and exits; it needs
# neither the bundle nor a GPU). The machine is lent for 15 minutes in all, its start-up included,
# and one command runs at most 600 s: the default run is planned to fit one call, --quick with
# more room. What each stage does:
#   machine    GPU, driver, CPU, torch/CUDA/cuDNN/NCCL versions into machine.txt (for RESULTS.md)
#   unpack     launch/gpu/unpack_bundle.sh: the bundle's .debs into build-gpu/bundle-root
#   env        launch/gpu/device_env.sh: PATH & co. onto the bundle, diffusers wheels, CUDA toolkit
#   configure  CMake (tests and bench ON); CUDA and NCCL must come out ON
#   build      only the targets the chosen stages run: nccl_gpu_tests and host_sync_tests, train_step_bench, and for the
#              demo the sdtrain CLI and sddemodata (-j nproc, -k 0: one failing target does not
#              stop the others)
#   nccl       launch/gpu/run_nccl_tests.sh: the world-size-1 NCCL tests (ordering, dtypes,
#              refusals, teardown, the UNet-gradient allreduce timed), then the death test alone
#              with MPI's job environment cleared, each part under its own short timeout; then
#              host_sync_tests (the trainer's loop waits for the GPU at most once per step)
#   bench      bench/train/bench_train_step.py, SD v1 at 512 px (64x64 latents), bf16: diffusers
#              and sdtrain each in one process over batch 4 and 8 x cached or not x gradient
#              checkpointing or not (8 settings): img/s, speed-up and peak memory per setting
#   demo       (not with --quick) configs/demo.pbtxt trained on the GPU by the sdtrain CLI for a
#              few hundred steps: the trainer's own CUDA path (NCCL at world size 1, pinned
#              batches, validation samples) end to end
# --quick builds only what the NCCL tests and train_step_bench need and skips the demo.
# --stages picks among nccl, bench, demo (default: all three; with --quick: nccl,bench); the
# stages before them run as needed.
#
# Everything lands in build-gpu/gpu-logs/ (build-gpu/ is ignored, so it stays on a warm machine
# between calls), which is packed after every stage into ONE archive, $OUT/gpu-logs.tar.gz (else
# build-gpu/gpu-logs.tar.gz), so that one file carries all of it back; the summary at the end
# (also summary.txt) holds the figures bench/RESULTS.md needs: the bench's Markdown table and the
# "[nccl]" allreduce lines.
#
# Time: the script stops itself before SDTRAIN_DEVICE_BUDGET_S (default 570 s) and says so; then
# call it again the same way at once (a machine stays warm only ~30 s after a call; a fresh one
# starts bare): the build resumes and the stages that already passed (markers in
# build-gpu/gpu-done/) are skipped and their results reprinted. --fresh forgets them. Each stage
# runs under `timeout` (its own limit, and never past the budget), so a hang costs that stage only.
# --configure-only: unpack, env and configure, no GPU needed (the check done here, off the device:
# SDTRAIN_BUNDLE_ROOT=/tmp/x SDTRAIN_BUILD_DIR=/tmp/y SDTRAIN_PYTHON=.venv/bin/python).
# Environment: SDTRAIN_BUNDLE (default .device-bundle), SDTRAIN_BUNDLE_ROOT (default
# BUILD_DIR/bundle-root), SDTRAIN_BUILD_DIR (default build-gpu), SDTRAIN_JOBS (default nproc),
# SDTRAIN_DEVICE_BUDGET_S, and those of device_env.sh (SDTRAIN_PYTHON, SDTRAIN_SITE, CUDA_HOME).
# Exit status: 0 all requested stages passed, 1 a stage failed, 2 bad arguments, 3 stopped for
# time (rerun).
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$repo"
say() { printf '[run_on_device] %s\n' "$*" >&2; }
usage_error() { say "$*"; say "usage: run_on_device.sh [--quick] [--stages nccl,bench,demo] [--fresh] [--dry-run] | --configure-only | --help"; exit 2; }
start=$SECONDS

# The plan: stage, expected seconds on a 16-core H100/H200 machine from a cold build, the least
# time that must be left to start it (the budget check), and what the estimate rests on. The
# expected times add up to the total --dry-run prints.
plan=(
  "machine    5   5 nvidia-smi, lscpu, one python import of torch"
  "unpack    15  15 dpkg -x of ~60 .debs (~35 MiB) and the library pruning: ~10 s measured on the 2-core CI machine"
  "env       10  10 pip install --no-deps from disk of the wheels the python lacks (diffusers & co.), one import"
  "configure 30  30 CMake's CUDA compiler detection and torch's config: 25-60 s measured on the 2-core CI machine"
  "build    210  30 cold, -j16, -g1: the torch.h precompiled header alone ~45 s (the protos alongside), then objects of ~1450 CPU-s (measured with -g on the CI machine: 1570 s for train_step_bench and its libraries, ~300 s for nccl_gpu_tests, ~150 s more for host_sync_tests and the test plugins; -g1 saves ~30%), /16 = ~95 s, links ~15 s"
  "nccl      55  60 2 processes of CUDA + NCCL start-up (~5 s each), 5 dtypes x 2 collectives behind a ~0.1 s kernel, 3 bucket sizes x 2 passes over 3.4 GB; host_sync_tests: one process, CUDA start-up and 6 steps of the test denoiser (~10 s)"
  "bench    150 120 diffusers, then sdtrain: imports + SD v1 built on the CPU (~10 s on the CI machine) + moved to the GPU, sdtrain twice; 8 settings x 10 steps of 0.1-0.4 s each (a guess: no GPU has run them)"
  "demo      45  40 the CLI and sddemodata (built with the rest, ~5 s more), 512 demo images, 330 steps of a 16 px model, 4 validation samples"
)
stage_names=$(for row in "${plan[@]}"; do echo "${row%% *}"; done)
work_stages=(nccl bench demo)  # what --stages picks among; the ones before them run as needed

quick=0 fresh=0 dry_run=0 configure_only=0 stages=
while [[ $# -gt 0 ]]; do
  case $1 in
    --quick) quick=1 ;;
    --fresh) fresh=1 ;;
    --dry-run) dry_run=1 ;;
    --configure-only) configure_only=1 ;;
    --stages)
      [[ $# -ge 2 && $2 != --* ]] || usage_error "--stages needs a value: a comma-separated list of ${work_stages[*]}"
      stages=$2; shift ;;
    --stages=*) stages=${1#--stages=} ;;
    -h | --help) sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d'; exit 0 ;;
    *) usage_error "unknown argument '$1'" ;;
  esac
  shift
done
if [[ -z $stages ]]; then
  stages=nccl,bench,demo
  [[ $quick -eq 1 ]] && stages=nccl,bench
fi
IFS=, read -r -a chosen <<<"$stages"
[[ ${#chosen[@]} -gt 0 ]] || usage_error "--stages: empty list (choose among ${work_stages[*]})"
for stage in "${chosen[@]}"; do
  [[ " ${work_stages[*]} " == *" $stage "* ]] || usage_error "--stages: unknown stage '$stage' (choose among ${work_stages[*]})"
  [[ $quick -eq 1 && $stage == demo ]] && usage_error "--stages: demo is not part of --quick (it builds the CLI)"
done
has() { [[ ,$stages, == *,$1,* ]]; }

# The stages this call would run, in order.
selected=()
for name in $stage_names; do
  case $name in
    nccl | bench | demo) [[ $configure_only -eq 0 ]] && has "$name" && selected+=("$name") ;;
    unpack | env | configure) selected+=("$name") ;;
    *) [[ $configure_only -eq 0 ]] && selected+=("$name") ;;
  esac
done
row_of() { local row; for row in "${plan[@]}"; do [[ ${row%% *} == "$1" ]] && { echo "$row"; return; }; done; }
least_s() { row_of "$1" | awk '{print $3}'; }

if [[ $dry_run -eq 1 ]]; then
  total=0
  echo "plan ($([[ $quick -eq 1 ]] && echo quick || echo default); stages: $stages), expected seconds on a 16-core H100/H200 machine from a cold build:"
  for name in "${selected[@]}"; do
    row=$(row_of "$name")
    read -r _ seconds _ basis <<<"$row"
    printf '  %-10s %4d s  %s\n' "$name" "$seconds" "$basis"
    total=$((total + seconds))
  done
  printf '  %-10s %4d s  (%d min %02d s; one run call may take 600 s)\n' total "$total" $((total / 60)) $((total % 60))
  exit 0
fi

bundle=$(realpath -m "${SDTRAIN_BUNDLE:-$repo/.device-bundle}")
build_dir=$(realpath -m "${SDTRAIN_BUILD_DIR:-$repo/build-gpu}")
root=$(realpath -m "${SDTRAIN_BUNDLE_ROOT:-$build_dir/bundle-root}")
logs=$build_dir/gpu-logs
archive=${OUT:-$build_dir}/gpu-logs.tar.gz
done_dir=$build_dir/gpu-done
budget=${SDTRAIN_DEVICE_BUDGET_S:-570}
[[ $budget =~ ^[0-9]+$ ]] || usage_error "SDTRAIN_DEVICE_BUDGET_S: '$budget' is not a number of seconds"
jobs=${SDTRAIN_JOBS:-$(nproc)}
mkdir -p "$logs" "$build_dir" "$(dirname "$archive")"
[[ $fresh -eq 1 ]] && rm -rf "$done_dir"
mkdir -p "$done_dir"
left() { echo $((budget - (SECONDS - start))); }

# One archive of every log, rewritten after each stage and on exit, so that whatever happened
# (a failure, the budget, a kill between stages) the last state comes back as one file.
pack() { tar -czf "$archive.tmp" -C "$build_dir" gpu-logs 2>/dev/null && mv -f "$archive.tmp" "$archive"; }
trap pack EXIT

failed=() stopped=() summary=()
passed_before() {  # a stage that passed in an earlier call: reprint its result, skip it
  [[ -f $done_dir/$1 ]] || return 1
  summary+=("$1: passed in an earlier call: $(cat "$done_dir/$1")")
}
may_start() {  # $1 stage: enough time left to start it?
  (( $(left) >= $(least_s "$1") )) && return 0
  stopped+=("$1"); summary+=("$1: not started, $(left) s left of $budget (rerun the same command)"); return 1
}
run_limited() {  # $1 stage, $2 its own limit in seconds, $3 log, then the command: sets $rc
  # Never past the budget (5 s kept for packing); a stage cut by the budget is "stopped" (rerun),
  # one that ran into its own limit has hung or is far slower than planned: "FAILED".
  local stage=$1 own=$2 log=$3 cut=0 limit=$(( $(left) - 5 ))
  shift 3
  if (( limit >= own )); then limit=$own; else cut=1; fi
  stage_start=$SECONDS rc=0
  timeout -k 10 "$limit" "$@" >>"$log" 2>&1 || rc=$?
  if [[ $rc -eq 124 || $rc -eq 137 ]]; then
    tail -20 "$log" >&2
    if [[ $cut -eq 1 ]]; then stopped+=("$stage"); summary+=("$stage: stopped after $limit s by the budget (rerun the same command)")
    else failed+=("$stage"); summary+=("$stage: FAILED: still running after its limit of $limit s (log: $(basename "$log"))"); fi
    rc=124
  elif [[ $rc -ne 0 ]]; then
    tail -30 "$log" >&2; failed+=("$stage"); summary+=("$stage: FAILED (exit $rc, log: $(basename "$log"))")
  fi
}
passed() {  # $1 stage, $2 result text: records a stage that passed (its marker skips it next call)
  echo "$2" >"$done_dir/$1"; summary+=("$1: passed in $((SECONDS - stage_start)) s: $2")
}
declare -A target_ok=()  # the targets this call's build stage left built and up to date
built() { [[ -n ${target_ok[$1]:-} ]]; }

# --- machine, unpack, env -----------------------------------------------------------------------
if [[ $configure_only -eq 0 ]]; then
  { date -u; uname -a; nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv || true
    nproc; lscpu | grep -E 'Model name|^CPU\(s\)|MHz' || true; free -g | head -2
  } >"$logs/machine.txt" 2>&1
fi
bash "$repo/launch/gpu/unpack_bundle.sh" "$bundle" "$root"
# shellcheck source=launch/gpu/device_env.sh
source "$repo/launch/gpu/device_env.sh"
if [[ $configure_only -eq 0 ]]; then
  "$python" - >>"$logs/machine.txt" 2>&1 <<'EOF' || true
import torch
print("torch", torch.__version__, "cuda", torch.version.cuda, "cudnn", torch.backends.cudnn.version(),
      "gpus", [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())])
try:
    print("nccl (torch's)", torch.cuda.nccl.version())
except Exception as error:  # a CPU torch has none
    print("nccl (torch's): none:", error)
EOF
  cat "$logs/machine.txt" >&2
fi

# --- configure ----------------------------------------------------------------------------------
# Line tables only (-g1), as the top CMakeLists.txt means RelWithDebInfo to be: its *_INIT flags
# get CMake's own "-O2 -g" appended, so the cache holds full debug info, which costs ~30% more
# compile time per object (measured: checkpoint_manager.cpp 23.4 s with -g, 16.3 s with -g1).
configure() {
  cmake -S "$repo" -B "$build_dir" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DSDTRAIN_PYTHON="$python" \
        -DCMAKE_C_FLAGS_RELWITHDEBINFO="-O2 -g1 -DNDEBUG" -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O2 -g1 -DNDEBUG" \
        -DSDTRAIN_BUILD_TESTS=ON -DSDTRAIN_BUILD_BENCH=ON \
        -DProtobuf_PROTOC_EXECUTABLE="$root/usr/bin/protoc" -DMPI_CXX_COMPILER="$root/usr/bin/mpicxx" \
        -DMPIEXEC_EXECUTABLE="$root/usr/bin/mpirun" "${cuda_extra[@]}" >"$logs/configure.log" 2>&1 ||
    { tail -40 "$logs/configure.log" >&2; say "configure failed (log: configure.log)"; return 1; }
  grep 'sdtrain:' "$logs/configure.log" >&2 || true
}
if [[ $configure_only -eq 1 ]]; then
  configure
  grep -E '^(Protobuf_|Boost_|boost_|MPI_|GTest_|OPENSSL_|ZLIB_|JPEG_|PNG_|nlohmann_json_|pkgcfg_lib_)[A-Za-z0-9_]*:(PATH|FILEPATH)=' \
       "$build_dir/CMakeCache.txt" | sort >"$logs/found.txt" || true
  say "configured $build_dir in $((SECONDS - start)) s; what it found: $logs/found.txt"
  exit 0
fi
"$python" -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)' || { say "$python sees no CUDA GPU"; exit 1; }
if ! configure; then
  failed+=(configure); summary+=("configure: FAILED (log: configure.log)")
elif ! grep -q 'sdtrain: CUDA ON, NCCL ON' "$logs/configure.log"; then
  failed+=(configure); summary+=("configure: CUDA and NCCL are not both ON (log: configure.log)")
fi
pack

# --- build --------------------------------------------------------------------------------------
# launch/check_cuda_build.sh --device-targets builds the same lists here, against the device's torch.
# shellcheck source=launch/gpu/device_targets.sh
source "$repo/launch/gpu/device_targets.sh"
targets=()
has nccl && targets+=("${device_targets_nccl[@]}")
has bench && targets+=("${device_targets_bench[@]}")
has demo && targets+=("${device_targets_demo[@]}")
if [[ ${#failed[@]} -eq 0 ]] && may_start build; then
  say "build: ${targets[*]} -j$jobs (log: build.log)"
  : >"$logs/build.log"
  # -k 0: a target that fails to build does not stop the others. Never marked done: the build is
  # checked again on every call (a no-op when up to date).
  run_limited build 100000 "$logs/build.log" cmake --build "$build_dir" --target "${targets[@]}" -j "$jobs" -- -k 0
  if [[ $rc -eq 0 ]]; then
    summary+=("build: ok in $((SECONDS - stage_start)) s")
    for target in "${targets[@]}"; do target_ok[$target]=1; done
  elif [[ $rc -ne 124 ]]; then
    grep -E -m 20 'error|FAILED' "$logs/build.log" >&2 || true
    # Which targets did build: asking again per target is a no-op for those (ninja's dry run
    # cannot tell: CMake's glob check always has work). A failing one fails again, within 60 s.
    for target in "${targets[@]}"; do
      echo "--- $target alone" >>"$logs/build.log"
      if timeout -k 5 60 cmake --build "$build_dir" --target "$target" -j "$jobs" >>"$logs/build.log" 2>&1; then
        target_ok[$target]=1
      fi
    done
    summary+=("build: built ${!target_ok[*]}")
  fi
  pack
fi

# --- nccl ---------------------------------------------------------------------------------------
if has nccl && ! passed_before nccl; then
  if ! built nccl_gpu_tests; then
    summary+=("nccl: not run (nccl_gpu_tests not built)")
  elif may_start nccl; then
    say "nccl: launch/gpu/run_nccl_tests.sh (log: nccl.log)"
    : >"$logs/nccl.log"
    run_limited nccl 300 "$logs/nccl.log" bash "$repo/launch/gpu/run_nccl_tests.sh" "$build_dir" "$logs"
    if [[ $rc -eq 0 ]] && built host_sync_tests; then
      # Host waits per training step, counted by c10's sync debug mode (tests/train/host_sync_test.cpp).
      say "nccl: host_sync_tests (log: host_sync.log)"
      run_limited nccl 90 "$logs/host_sync.log" ctest --test-dir "$build_dir" -R '^HostSyncs\.' --output-on-failure
    fi
    [[ $rc -eq 0 ]] && passed nccl "$(grep -c '^\[       OK \]' "$logs/nccl.log") tests OK, host syncs per step checked"
    pack
  fi
fi

# --- bench --------------------------------------------------------------------------------------
bench_command=("$python" bench/train/bench_train_step.py --bench "$build_dir/bin/train_step_bench" --device cuda
               --config sd --latent 64 --precision bf16 --batch 4,8 --cached 0,1 --gradient-checkpointing 0,1
               --iters 8 --warmup 2)
if has bench && ! passed_before bench; then
  if ! built train_step_bench; then
    summary+=("bench: not run (train_step_bench not built)")
  elif may_start bench; then
    say "bench: ${bench_command[*]} (log: bench.log)"
    echo "${bench_command[*]}" >"$logs/bench.log"
    run_limited bench 420 "$logs/bench.log" "${bench_command[@]}"
    [[ $rc -eq 0 ]] && passed bench "8 settings (table below)"
    pack
  fi
fi

# --- demo ---------------------------------------------------------------------------------------
demo_out=$build_dir/gpu-demo
demo_command=("$build_dir/bin/sdtrain" --config configs/demo.pbtxt --set run.device=cuda --set run.max_steps=330
              --set run.output_dir="$demo_out")
if has demo && ! passed_before demo; then
  if ! { built sdtrain_cli && built sddemodata; }; then
    summary+=("demo: not run (sdtrain or sddemodata not built)")
  elif may_start demo; then
    say "demo: ${demo_command[*]} (log: demo.log)"
    : >"$logs/demo.log"
    rm -rf "$demo_out"
    rc=0
    # The demo config reads its images from runs/demo/data (launch/run_demo.sh writes the same).
    [[ -f runs/demo/data/metadata.csv ]] ||
      run_limited demo 60 "$logs/demo.log" "$build_dir/bin/sddemodata" --out runs/demo/data --count 512 --size 64 --seed 0
    [[ $rc -eq 0 ]] && run_limited demo 120 "$logs/demo.log" "${demo_command[@]}"
    find "$demo_out" -maxdepth 2 -name '*.csv' -exec cp -f {} "$logs/" \; 2>/dev/null || true
    [[ $rc -eq 0 ]] && passed demo "330 steps on cuda; last line: $(tail -1 "$logs/demo.log")"
    pack
  fi
fi

# --- summary ------------------------------------------------------------------------------------
say "summary after $((SECONDS - start)) s (all logs: $archive):"
{
  printf '  %s\n' "${summary[@]}"
  grep -h '^\[nccl\]' "$logs/nccl.log" 2>/dev/null || true
  grep -h '^|' "$logs/bench.log" 2>/dev/null || true
} | tee "$logs/summary.txt" >&2
if [[ ${#failed[@]} -gt 0 ]]; then say "FAILED: ${failed[*]}"; exit 1; fi
if [[ ${#stopped[@]} -gt 0 ]]; then say "stopped for time: ${stopped[*]}; call the same command again to continue"; exit 3; fi
say "all requested stages passed"
