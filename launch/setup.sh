#!/usr/bin/env bash
# One command for the whole set-up on a fresh Debian machine (12 or 13), idempotent and fast when
# all is there:
#   Debian packages → Python venv (torch + test references) → CMake configure → build
# then, optionally:
#   --demo     run the demo job: 2 MPI ranks on the shipped demo config (CPU is fine)
#   --test     run the whole test suite (ctest); extra arguments go to ctest (e.g. -L fast)
#   --dry-run  print what would be installed and run (the Debian packages missing, the torch wheel
#              and the pip, CMake and build commands) and change nothing
#
# Environment: SDTRAIN_BUILD_DIR (default build/), SDTRAIN_VENV (default .venv/),
# SDTRAIN_TORCH (which torch wheel the venv gets, LibTorch included: `cpu`, the default, the CPU
# build from PyTorch's CPU index, so that no machine pulls the multi-GB CUDA build PyPI serves for
# Linux; `cuda`, that CUDA build, to compile and run the CUDA/NCCL paths on a GPU machine),
# SDTRAIN_PYTHON (use this python and its torch instead of making a venv; SDTRAIN_TORCH is then
# not used), SDTRAIN_JOBS (parallel build jobs, default: cores).
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build_dir=${SDTRAIN_BUILD_DIR:-$repo/build}
venv=${SDTRAIN_VENV:-$repo/.venv}
jobs=${SDTRAIN_JOBS:-$(nproc)}
torch_variant=${SDTRAIN_TORCH:-cpu}
mode=${1:-}
[[ $# -gt 0 ]] && shift

say() { printf '[setup] %s\n' "$*" >&2; }
dry_run=false
[[ $mode == --dry-run ]] && dry_run=true
# run CMD...: runs it, or with --dry-run prints it as a shell line.
run() {
  if $dry_run; then printf '+'; printf ' %q' "$@"; printf '\n'; else "$@"; fi
}
case "$mode" in
  ""|--demo|--test|--dry-run) ;;
  *) say "unknown mode '$mode' (use --demo, --test or --dry-run)"; exit 2 ;;
esac
case "$torch_variant" in
  cpu|cuda) ;;
  *) say "SDTRAIN_TORCH='$torch_variant': expected cpu or cuda"; exit 2 ;;
esac

# --- 1. Debian packages -------------------------------------------------------------------------
mapfile -t debian_packages < <(sed -e 's/#.*//' -e '/^[[:space:]]*$/d' "$repo/launch/debian-packages.txt")
missing=()
for package in "${debian_packages[@]}"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
done
if [[ ${#missing[@]} -gt 0 ]]; then
  say "installing Debian packages: ${missing[*]}"
  sudo_cmd=()
  [[ $(id -u) -ne 0 ]] && sudo_cmd=(sudo)
  run "${sudo_cmd[@]}" apt-get update -qq
  if $dry_run; then
    run "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
  else
    DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
else
  say "Debian packages: all ${#debian_packages[@]} installed"
fi

# --- 2. Python: torch (for LibTorch) and the test references -------------------------------------
# torch first and pinned (requirements-torch.txt). pip resolves a plain `torch==X` on Linux to the
# CUDA build with its CUDA libraries; the CPU build is `torch==X+cpu` on PyTorch's CPU index. A
# wheel already at hand (pip's configured find-links, e.g. a local wheelhouse) is used first, so
# a machine without access to that index still sets up.
torch_version=$(sed -n 's/^torch==\([^[:space:]]*\).*/\1/p' "$repo/launch/requirements-torch.txt")
[[ -n $torch_version ]] || { say "launch/requirements-torch.txt: expected a line torch==VERSION"; exit 2; }
cpu_index=https://download.pytorch.org/whl/cpu
install_torch() {
  local python=$1
  if [[ $torch_variant == cpu ]]; then
    say "torch $torch_version+cpu: a local wheel if pip finds one, else from $cpu_index"
    # The local wheel alone first (--no-deps: its dependencies come from the usual index after).
    if $dry_run; then
      run "$python" -m pip install -q --no-index --no-deps "torch==$torch_version+cpu"
      run "$python" -m pip install -q "torch==$torch_version+cpu"
      printf '# if no local wheel:\n'
      run "$python" -m pip install -q "torch==$torch_version+cpu" --extra-index-url "$cpu_index"
    elif "$python" -m pip install -q --no-index --no-deps "torch==$torch_version+cpu" 2>/dev/null; then
      "$python" -m pip install -q "torch==$torch_version+cpu"
    else
      "$python" -m pip install -q "torch==$torch_version+cpu" --extra-index-url "$cpu_index"
    fi
  else
    say "torch $torch_version: PyPI's Linux wheel, the CUDA build"
    run "$python" -m pip install -q "torch==$torch_version"
  fi
}
# check_torch PYTHON: the torch there is the variant asked for (a CPU wheel satisfies `==X` too,
# so pip alone would keep it when cuda is asked for).
check_torch() {
  $dry_run && return 0
  local cuda
  cuda=$("$1" -c 'import torch; print(torch.version.cuda or "")') ||
    { say "$1 cannot import torch"; exit 1; }
  if [[ $torch_variant == cpu && -n $cuda ]]; then
    say "the venv's torch is a CUDA build ($cuda); SDTRAIN_TORCH=cpu wants the CPU build"; exit 1
  elif [[ $torch_variant == cuda && -z $cuda ]]; then
    say "the venv's torch is a CPU build; SDTRAIN_TORCH=cuda wants the CUDA build"; exit 1
  fi
}

if [[ -n ${SDTRAIN_PYTHON:-} ]]; then
  python=$SDTRAIN_PYTHON
  say "python and torch from SDTRAIN_PYTHON: $python (nothing installed)"
else
  python=$venv/bin/python
  [[ -x $python ]] || { say "creating $venv"; run python3 -m venv "$venv"; }
  stamp=$venv/.sdtrain-requirements
  wanted="$torch_variant $(cat "$repo/launch/requirements-torch.txt" "$repo/launch/requirements-test.txt" | sha256sum | cut -d' ' -f1)"
  if [[ ! -f $stamp || $(cat "$stamp") != "$wanted" ]]; then
    say "installing Python packages into $venv"
    # Another variant already there would satisfy the pin: take it out first.
    previous=$(cat "$stamp" 2>/dev/null || true)
    if [[ $previous == *" "* && ${previous%% *} != "$torch_variant" ]]; then
      run "$python" -m pip uninstall -q -y torch
    fi
    install_torch "$python"
    run "$python" -m pip install -q -r "$repo/launch/requirements-test.txt" -c "$repo/launch/requirements-torch.txt"
    check_torch "$python"  # after numpy is in, which torch's import otherwise warns about
    $dry_run || echo "$wanted" >"$stamp"
  fi
fi

# --- 3. Configure and build ----------------------------------------------------------------------
export CCACHE_BASEDIR=$repo
export CCACHE_SLOPPINESS=${CCACHE_SLOPPINESS:-pch_defines,time_macros,include_file_mtime,include_file_ctime}
if [[ ! -f $build_dir/build.ninja ]]; then
  say "configuring $build_dir"
  configure=(cmake -S "$repo" -B "$build_dir" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo
             -DSDTRAIN_PYTHON="$python"
             -DCMAKE_CXX_COMPILER_LAUNCHER=ccache -DCMAKE_C_COMPILER_LAUNCHER=ccache)
  if $dry_run; then run "${configure[@]}"; else "${configure[@]}" >/dev/null; fi
fi
say "building ($jobs jobs)"
run cmake --build "$build_dir" -j "$jobs"

# --- 4. What to run ------------------------------------------------------------------------------
case "$mode" in
  "") say "done: binaries in $build_dir/bin" ;;
  --dry-run) say "dry run: nothing was changed" ;;
  --demo) exec "$repo/launch/run_demo.sh" "$@" ;;
  --test) cd "$build_dir" && exec ctest -j 2 --output-on-failure --timeout 900 "$@" ;;
esac
