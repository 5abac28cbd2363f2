#!/usr/bin/env bash
# One command for the whole set-up on a fresh Debian machine, idempotent and fast when all is there:
#   Debian packages → Python venv (torch + test references) → CMake configure → build
# then, optionally:
#   --demo   run the demo job: 2 MPI ranks on the shipped demo config (CPU is fine)
#   --test   run the whole test suite (ctest); extra arguments go to ctest (e.g. -L fast)
#
# Environment: SDTRAIN_BUILD_DIR (default build/), SDTRAIN_VENV (default .venv/),
# SDTRAIN_PYTHON (use this python with torch instead of making a venv, e.g. on a GPU machine),
# SDTRAIN_JOBS (parallel build jobs, default: cores).
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build_dir=${SDTRAIN_BUILD_DIR:-$repo/build}
venv=${SDTRAIN_VENV:-$repo/.venv}
jobs=${SDTRAIN_JOBS:-$(nproc)}
mode=${1:-}
[[ $# -gt 0 ]] && shift

say() { printf '[setup] %s\n' "$*" >&2; }

# --- 1. Debian packages -------------------------------------------------------------------------
debian_packages=(
  build-essential cmake ninja-build ccache pkg-config git python3-venv
  libprotobuf-dev protobuf-compiler libboost-program-options-dev
  libopenmpi-dev openmpi-bin libgtest-dev libgmock-dev
  libjpeg62-turbo-dev libpng-dev libwebp-dev libzip-dev libutf8proc-dev nlohmann-json3-dev
  libssl-dev zlib1g-dev
)
missing=()
for package in "${debian_packages[@]}"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
done
if [[ ${#missing[@]} -gt 0 ]]; then
  say "installing Debian packages: ${missing[*]}"
  sudo_cmd=()
  [[ $(id -u) -ne 0 ]] && sudo_cmd=(sudo)
  "${sudo_cmd[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# --- 2. Python: torch (for LibTorch) and the test references -------------------------------------
if [[ -n ${SDTRAIN_PYTHON:-} ]]; then
  python=$SDTRAIN_PYTHON
else
  python=$venv/bin/python
  [[ -x $python ]] || { say "creating $venv"; python3 -m venv "$venv"; }
  stamp=$venv/.sdtrain-requirements
  wanted=$(cat "$repo/launch/requirements-torch.txt" "$repo/launch/requirements-test.txt" | sha256sum | cut -d' ' -f1)
  if [[ ! -f $stamp || $(cat "$stamp") != "$wanted" ]]; then
    say "installing Python packages into $venv"
    # torch first and pinned: an unpinned torch would pull a multi-GB CUDA build.
    "$python" -m pip install -q -r "$repo/launch/requirements-torch.txt"
    "$python" -m pip install -q -r "$repo/launch/requirements-test.txt" -c "$repo/launch/requirements-torch.txt"
    echo "$wanted" >"$stamp"
  fi
fi

# --- 3. Configure and build ----------------------------------------------------------------------
export CCACHE_BASEDIR=$repo
export CCACHE_SLOPPINESS=${CCACHE_SLOPPINESS:-pch_defines,time_macros,include_file_mtime,include_file_ctime}
if [[ ! -f $build_dir/build.ninja ]]; then
  say "configuring $build_dir"
  cmake -S "$repo" -B "$build_dir" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
        -DSDTRAIN_PYTHON="$python" \
        -DCMAKE_CXX_COMPILER_LAUNCHER=ccache -DCMAKE_C_COMPILER_LAUNCHER=ccache >/dev/null
fi
say "building ($jobs jobs)"
cmake --build "$build_dir" -j "$jobs"

# --- 4. What to run ------------------------------------------------------------------------------
case "$mode" in
  "") say "done: binaries in $build_dir/bin" ;;
  --demo) exec "$repo/launch/run_demo.sh" "$@" ;;
  --test) cd "$build_dir" && exec ctest -j 2 --output-on-failure --timeout 900 "$@" ;;
  *) say "unknown mode '$mode' (use --demo or --test)"; exit 2 ;;
esac
