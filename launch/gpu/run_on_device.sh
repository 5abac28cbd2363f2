#!/usr/bin/env bash
# Run THERE, on the lent GPU machine (one H200, 16 cores, Ubuntu 24.04-like, no internet, python3
# with CUDA torch but without diffusers and without the Debian -dev packages sdtrain builds
# against), from the repository root, with .device-bundle/ carried (made here by
# launch/gpu/fetch_bundle.sh). The run tool call:
#   run(command="bash launch/gpu/run_on_device.sh", carry=[".device-bundle"], timeout_s=600)
# It does, logging to $OUT (else build-gpu/gpu-logs; build-gpu/ is ignored, so it stays on a warm
# machine between calls):
#   1. unpack   dpkg -x every .deb into build-gpu/bundle-root (not into /, and not under the
#               carried .device-bundle/, which each call replaces: build-gpu/ stays, so a second
#               call reuses it); drop the runtime libraries the machine already has (same soname
#               in its linker cache; Open MPI with PMIx/hwloc/libevent/UCX/libfabric/PSM, protobuf
#               and boost always come from the bundle); point the dev links at what remains;
#               relocated .pc files; the mpirun/mpicxx links Debian makes with update-alternatives.
#               ~10 s the first time
#   2. env      PATH, LD_LIBRARY_PATH, PKG_CONFIG_PATH, CMAKE_PREFIX_PATH, <Pkg>_ROOT, OPAL_PREFIX
#               and PMIX_PKGLIBDIR (relocated Open MPI 4.1 / PMIx), OMPI_MCA_* as Debian's
#               /etc/openmpi sets them; diffusers (and requests & co. when missing) from
#               .device-bundle/wheels into /tmp/site, on PYTHONPATH.                    ~5 s
#   3. nccl     launch/check_nccl_gpu.sh build-gpu: configure (CUDA and NCCL must be ON), build
#               nccl_gpu_tests (-j16), run the world-size-1 NCCL tests.               ~1.5-2 min
#   4. build    configure with -DSDTRAIN_BUILD_BENCH=ON, build sdtrain, train_step_bench
#               (libsdtrain + plugins: the bulk of the build).                        ~4-5 min (estimate)
#   5. bench    bench/train/bench_train_step.py --device cuda --config sd --latent 64 --batch 4
#               --precision bf16 --iters 10 --warmup 3: plain, --cached, --gradient-checkpointing
#               (diffusers vs sdtrain, each side in its own process).           ~1-2 min each
# The whole can exceed one 600 s call. It stops itself before SDTRAIN_DEVICE_BUDGET_S (default 570)
# and says so; then call it again the same way at once (a machine stays warm only ~30 s after a
# call; a fresh one starts bare): the build resumes and stages that already passed (markers in
# build-gpu/gpu-done/) are skipped and their results reprinted. --fresh forgets them.
#   bash launch/gpu/run_on_device.sh [--configure-only] [--stages nccl,build,plain,cached,gc] [--fresh]
# --configure-only: steps 1-2 and the configure of step 4, no GPU needed (the check done here,
# off the device: SDTRAIN_BUNDLE_ROOT=/tmp/x SDTRAIN_BUILD_DIR=/tmp/y SDTRAIN_PYTHON=.venv/bin/python).
# Environment: SDTRAIN_BUNDLE (default .device-bundle), SDTRAIN_BUNDLE_ROOT (default
# BUILD_DIR/bundle-root), SDTRAIN_BUILD_DIR (default build-gpu), SDTRAIN_PYTHON (default python3,
# else /opt/torch/.venv/bin/python3), SDTRAIN_SITE (default /tmp/site), SDTRAIN_JOBS (default
# nproc), SDTRAIN_BUNDLE_KEEP_ALL=1 (keep every bundled runtime library), CUDA_HOME.
# Exit status: 0 all requested stages passed, 1 a stage failed, 3 stopped for time (rerun).
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$repo"
say() { printf '[run_on_device] %s\n' "$*" >&2; }
start=$SECONDS

configure_only=0 fresh=0 stages=nccl,build,plain,cached,gc
while [[ $# -gt 0 ]]; do
  case $1 in
    --configure-only) configure_only=1 ;;
    --fresh) fresh=1 ;;
    --stages) stages=$2; shift ;;
    -h | --help) sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d'; exit 0 ;;
    *) say "unknown argument '$1'"; exit 2 ;;
  esac
  shift
done

bundle=$(realpath -m "${SDTRAIN_BUNDLE:-$repo/.device-bundle}")
build_dir=$(realpath -m "${SDTRAIN_BUILD_DIR:-$repo/build-gpu}")
root=$(realpath -m "${SDTRAIN_BUNDLE_ROOT:-$build_dir/bundle-root}")
logs=${OUT:-$build_dir/gpu-logs}
done_dir=$build_dir/gpu-done
budget=${SDTRAIN_DEVICE_BUDGET_S:-570}
jobs=${SDTRAIN_JOBS:-$(nproc)}
mkdir -p "$logs" "$build_dir"
[[ $fresh -eq 1 ]] && rm -rf "$done_dir"
mkdir -p "$done_dir"
left() { echo $((budget - (SECONDS - start))); }
[[ -f $bundle/MANIFEST ]] || { say "no $bundle/MANIFEST: run launch/gpu/fetch_bundle.sh first and carry .device-bundle"; exit 1; }

# --- 1. unpack -------------------------------------------------------------------------------------
lib=$root/usr/lib/x86_64-linux-gnu
stamp=$( (cat "$bundle/MANIFEST" "${BASH_SOURCE[0]}"; echo "keep_all=${SDTRAIN_BUNDLE_KEEP_ALL:-0}") | sha256sum | cut -d' ' -f1)
if [[ ! -f $root/.unpacked || $(cat "$root/.unpacked") != "$stamp" ]]; then
  say "unpacking $(ls "$bundle"/debs/*.deb | wc -l) .deb files into $root"
  rm -rf "$root"
  mkdir -p "$root"
  for deb in "$bundle"/debs/*.deb; do dpkg -x "$deb" "$root"; done
  # Debian 12 still splits /lib from /usr/lib: merge, and make absolute dev links relative.
  if [[ -d $root/lib/x86_64-linux-gnu ]]; then cp -a "$root/lib/x86_64-linux-gnu/." "$lib/"; rm -rf "$root/lib"; fi
  for link in "$lib"/*; do
    [[ -L $link ]] || continue
    target=$(readlink "$link")
    if [[ $target =~ ^/(usr/)?lib/x86_64-linux-gnu/([^/]+)$ && -e $lib/${BASH_REMATCH[2]} ]]; then
      ln -sfn "${BASH_REMATCH[2]}" "$link"
    fi
  done
  # Prefer the machine's own copy of a standalone runtime library (newer there, and a bundled older
  # one on LD_LIBRARY_PATH would shadow it for python and every other program).
  pruned=()
  if [[ ${SDTRAIN_BUNDLE_KEEP_ALL:-0} != 1 ]]; then
    ldcache=$(ldconfig -p 2>/dev/null | awk '/x86-64/ {print $1, $NF}') || ldcache=
    declare -A resolves=()
    for link in "$lib"/*; do [[ -L $link ]] && resolves[$link]=$(readlink -f "$link"); done
    for file in "$lib"/lib*.so.*; do
      [[ -f $file && ! -L $file ]] || continue
      soname=$(readelf -d "$file" 2>/dev/null | sed -n 's/.*(SONAME).*\[\(.*\)\]/\1/p') || soname=
      case $soname in
        "" | libprotobuf* | libprotoc* | libboost* | libhwloc* | libevent* | libpmix* | libmpi* | libopen-* | \
        libmca_* | libompitrace* | liboshmem* | libuc[mpst]* | libfabric* | libpsm* | libinfinipath*) continue ;;
      esac
      system=$(awk -v s="$soname" '$1 == s {print $2; exit}' <<<"$ldcache")
      [[ -n $system && -e $system && $system != "$root"/* ]] || continue
      # its soname links go; its dev link (libfoo.so) stays, to be pointed at the machine's below
      for link in "${!resolves[@]}"; do [[ ${resolves[$link]} == "$file" && $link != *.so ]] && rm -f "$link"; done
      rm -f "$file"
      pruned+=("$soname")
    done
  fi
  # Dev links (libz.so, libcrypto.so, ...) whose library was pruned: point them at the machine's.
  for link in "$lib"/*.so; do
    [[ -L $link && ! -e $link ]] || continue
    stem=$(basename "$link")
    # awk reads to the end: leaving early would kill ldconfig with SIGPIPE, and under pipefail
    # the lookup would then fail at random.
    system=$(ldconfig -p 2>/dev/null | awk -v s="$stem." '/x86-64/ && index($1, s) == 1 && !found {print $NF; found = 1}') || system=
    if [[ -n $system ]]; then ln -sfn "$system" "$link"; fi
  done
  # Warned only now: a link to another dev link (libpng.so -> libpng16.so) resolves once that one
  # has been repointed.
  for link in "$lib"/*.so; do
    if [[ -L $link && ! -e $link ]]; then say "warning: $link dangles and the machine has no $(basename "$link").*"; fi
  done
  [[ ${#pruned[@]} -gt 0 ]] && say "taken from the machine instead of the bundle: ${pruned[*]}"
  # Debian makes these with update-alternatives, which dpkg -x does not run.
  for name in mpirun mpiexec mpicc mpicxx mpic++ mpiCC; do ln -sfn "$name.openmpi" "$root/usr/bin/$name"; done
  # pkg-config files with prefix=/usr (and literal /usr paths) rewritten into the bundle.
  mkdir -p "$root/pkgconfig"
  for pc in "$lib"/openmpi/lib/pkgconfig/*.pc "$lib"/pkgconfig/*.pc "$root"/usr/share/pkgconfig/*.pc; do
    [[ -e $pc ]] || continue
    sed -E "s#(=|-I|-L)/usr(/|\$|[[:space:]])#\\1$root/usr\\2#g" "$pc" >"$root/pkgconfig/$(basename "$pc")"
  done
  echo "$stamp" >"$root/.unpacked"
fi

# --- 2. environment ----------------------------------------------------------------------------------
export PATH=$root/usr/bin:$PATH
export LD_LIBRARY_PATH=$lib:$lib/openmpi/lib:$lib/pmix2/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
export PKG_CONFIG_PATH=$root/pkgconfig${PKG_CONFIG_PATH:+:$PKG_CONFIG_PATH}
export CMAKE_PREFIX_PATH=$root/usr${CMAKE_PREFIX_PATH:+:$CMAKE_PREFIX_PATH}
export Protobuf_ROOT=$root/usr Boost_ROOT=$root/usr OPENSSL_ROOT_DIR=$root/usr MPI_HOME=$root/usr
# A relocated Open MPI finds its components, help files and wrapper data through OPAL_PREFIX; PMIx
# its components through PMIX_PKGLIBDIR (PMIX_PREFIX alone does not move them).
export OPAL_PREFIX=$root/usr PMIX_PREFIX=$lib/pmix2 PMIX_PKGLIBDIR=$lib/pmix2/lib/pmix
# What Debian's /etc/openmpi/openmpi-mca-params.conf sets (that file is not there).
export OMPI_MCA_btl_base_warn_component_unused=${OMPI_MCA_btl_base_warn_component_unused:-0}
export OMPI_MCA_mtl=${OMPI_MCA_mtl:-^ofi} OMPI_MCA_btl=${OMPI_MCA_btl:-^uct,openib,ofi}
export OMPI_MCA_pml=${OMPI_MCA_pml:-^ucx} OMPI_MCA_osc=${OMPI_MCA_osc:-^ucx,pt2pt}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
{ protoc --version && mpirun --version | head -1 && mpicxx -showme && pkg-config --version &&
  pkg-config --cflags --libs libwebp; } >"$logs/bundle-env.txt" 2>&1 || { cat "$logs/bundle-env.txt" >&2; say "the unpacked bundle does not run"; exit 1; }
cat "$logs/bundle-env.txt" >&2

python=${SDTRAIN_PYTHON:-python3}
if [[ -z ${SDTRAIN_PYTHON:-} ]] && ! "$python" -c 'import torch' 2>/dev/null && [[ -x /opt/torch/.venv/bin/python3 ]]; then
  python=/opt/torch/.venv/bin/python3
fi
python=$(command -v "$python")
export SDTRAIN_PYTHON=$python
# Wheels: only those whose distribution this python lacks (never shadow its own packages).
site=${SDTRAIN_SITE:-/tmp/site}
missing=()
for wheel in "$bundle"/wheels/*.whl; do
  dist=$(basename "$wheel" | cut -d- -f1)
  PYTHONPATH=$site${PYTHONPATH:+:$PYTHONPATH} "$python" -c "import importlib.metadata as m, sys; m.version(sys.argv[1])" "$dist" 2>/dev/null ||
    missing+=("$wheel")
done
if [[ ${#missing[@]} -gt 0 ]]; then
  say "installing into $site: $(for w in "${missing[@]}"; do basename "$w" | cut -d- -f1-2; done | tr '\n' ' ')"
  mkdir -p "$site"
  if ! "$python" -m pip install -q --no-index --no-deps --target "$site" "${missing[@]}" 2>"$logs/pip.log"; then
    say "pip failed (see pip.log); unzipping the wheels instead"
    for wheel in "${missing[@]}"; do "$python" -m zipfile -e "$wheel" "$site"; done
  fi
fi
export PYTHONPATH=$site${PYTHONPATH:+:$PYTHONPATH}
"$python" -c 'import diffusers; print("diffusers", diffusers.__version__, "from", diffusers.__file__)' >&2 ||
  say "warning: diffusers does not import; the bench stages will fail"

# CUDA toolkit and nvrtc, as launch/check_nccl_gpu.sh does (torch's CMake config links CUDA::nvrtc).
export CUDA_HOME=${CUDA_HOME:-/usr/local/cuda}
export CUDAToolkit_ROOT=$CUDA_HOME CUDACXX=$CUDA_HOME/bin/nvcc PATH=$PATH:$CUDA_HOME/bin
cuda_extra=()
if ! compgen -G "$CUDA_HOME/lib64/libnvrtc.so*" >/dev/null; then
  nvrtc=$("$python" -c 'import glob, os, nvidia; hits = [h for p in nvidia.__path__ for h in sorted(glob.glob(os.path.join(p, "*", "lib", "libnvrtc.so.*")))]; print(hits[0] if hits else "", end="")' 2>/dev/null || true)
  if [[ -n $nvrtc ]]; then cuda_extra+=(-DCUDA_nvrtc_LIBRARY="$nvrtc" -DCUDA_NVRTC_LIB="$nvrtc"); fi
fi

configure() {  # the bench build: check_nccl_gpu.sh configures the same directory with BENCH=OFF
  cmake -S "$repo" -B "$build_dir" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DSDTRAIN_PYTHON="$python" \
        -DSDTRAIN_BUILD_TESTS=ON -DSDTRAIN_BUILD_BENCH=ON \
        -DProtobuf_PROTOC_EXECUTABLE="$root/usr/bin/protoc" -DMPI_CXX_COMPILER="$root/usr/bin/mpicxx" \
        -DMPIEXEC_EXECUTABLE="$root/usr/bin/mpirun" "${cuda_extra[@]}" >"$logs/configure.log" 2>&1 ||
    { tail -40 "$logs/configure.log" >&2; say "configure failed (log: $logs/configure.log)"; return 1; }
  grep 'sdtrain:' "$logs/configure.log" >&2 || true
}
if [[ $configure_only -eq 1 ]]; then
  configure
  grep -E '^(Protobuf_|Boost_|boost_|MPI_|GTest_|OPENSSL_|ZLIB_|JPEG_|PNG_|nlohmann_json_|pkgcfg_lib_)[A-Za-z0-9_]*:(PATH|FILEPATH)=' \
       "$build_dir/CMakeCache.txt" | sort >"$logs/found.txt" || true
  say "configured $build_dir in $((SECONDS - start)) s; what it found: $logs/found.txt"
  exit 0
fi

# --- 3-5. stages -------------------------------------------------------------------------------------
"$python" -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)' ||
  { say "$python sees no CUDA GPU"; exit 1; }
failed=() stopped=()
summary=()
has() { [[ ,$stages, == *,$1,* ]]; }
passed_before() {  # a stage that passed in an earlier call: reprint its result, skip it
  [[ -f $done_dir/$1 ]] || return 1
  summary+=("$1: passed in an earlier call: $(cat "$done_dir/$1")")
}
enough_time() {  # $1 stage, $2 seconds it needs at least
  (( $(left) >= $2 )) && return 0
  stopped+=("$1"); summary+=("$1: not started, $(left) s left of $budget (rerun the same command)"); return 1
}

if has nccl && ! passed_before nccl && enough_time nccl 150; then
  say "nccl: launch/check_nccl_gpu.sh $build_dir (log: $logs/nccl.log)"
  if SDTRAIN_JOBS=$jobs timeout -k 10 "$(( $(left) - 10 ))" bash launch/check_nccl_gpu.sh "$build_dir" >"$logs/nccl.log" 2>&1; then
    result=$(grep -E '^\[  PASSED  \]|tests passed in' "$logs/nccl.log" | tr '\n' ' ') || true
    echo "$result" >"$done_dir/nccl"; summary+=("nccl: PASSED $result")
  else
    rc=$?; tail -40 "$logs/nccl.log" >&2
    if [[ $rc -eq 124 ]]; then stopped+=(nccl); summary+=("nccl: stopped for time (rerun)")
    else failed+=(nccl); summary+=("nccl: FAILED (exit $rc): $(grep -E '^\[  FAILED  \]' "$logs/nccl.log" | head -5 | tr '\n' ' ' || true)"); fi
  fi
  [[ -f $logs/nccl.log ]] && cp -f "$build_dir/nccl_gpu_tests.xml" "$logs/" 2>/dev/null || true
fi

built=0
if has build || has plain || has cached || has gc; then
  if enough_time build 60 && { configure || { failed+=(configure); summary+=("configure: FAILED (log: configure.log)"); false; }; }; then
    say "build: sdtrain train_step_bench -j$jobs (log: $logs/build.log)"
    build_start=$SECONDS
    if timeout -k 10 "$(( $(left) - 5 ))" cmake --build "$build_dir" --target sdtrain train_step_bench -j "$jobs" >"$logs/build.log" 2>&1; then
      built=1; summary+=("build: ok in $((SECONDS - build_start)) s")
    else
      rc=$?
      if [[ $rc -eq 124 ]]; then stopped+=(build); summary+=("build: stopped for time after $((SECONDS - build_start)) s (rerun: it resumes)")
      else grep -E -m 20 'error|FAILED' "$logs/build.log" >&2 || tail -30 "$logs/build.log" >&2
           failed+=(build); summary+=("build: FAILED (log: build.log)"); fi
    fi
  fi
fi

bench() {  # $1 stage name, then extra arguments of bench_train_step.py
  local name=$1; shift
  has "$name" || return 0
  passed_before "$name" && return 0
  [[ $built -eq 1 ]] || { summary+=("$name: not run (no build)"); return 0; }
  enough_time "$name" 90 || return 0
  local limit=$(( $(left) - 5 )); (( limit > 300 )) && limit=300
  say "bench $name: $* (log: $logs/bench-$name.log, limit $limit s)"
  if timeout -k 10 "$limit" "$python" bench/train/bench_train_step.py --bench "$build_dir/bin/train_step_bench" --device cuda \
       --config sd --latent 64 --batch 4 --precision bf16 --iters 10 --warmup 3 "$@" >"$logs/bench-$name.log" 2>&1; then
    cat "$logs/bench-$name.log" >&2
    { grep -E 'ms/step|peak memory' "$logs/bench-$name.log" || true; } | tr -s ' ' | tr '\n' ';' >"$done_dir/$name"
    summary+=("$name: $(cat "$done_dir/$name")")
  else
    local rc=$?; tail -30 "$logs/bench-$name.log" >&2
    if [[ $rc -eq 124 ]]; then stopped+=("$name"); summary+=("$name: stopped for time after $limit s")
    else failed+=("$name"); summary+=("$name: FAILED (exit $rc, log: bench-$name.log)"); fi
  fi
}
bench plain
bench cached --cached
bench gc --gradient-checkpointing

say "summary after $((SECONDS - start)) s (logs: $logs):"
printf '  %s\n' "${summary[@]}" | tee "$logs/summary.txt" >&2
if [[ ${#failed[@]} -gt 0 ]]; then say "FAILED: ${failed[*]}"; exit 1; fi
if [[ ${#stopped[@]} -gt 0 ]]; then say "stopped for time: ${stopped[*]}; call the same command again to continue"; exit 3; fi
say "all requested stages passed"
