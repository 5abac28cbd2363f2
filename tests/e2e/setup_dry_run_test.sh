#!/usr/bin/env bash
# launch/setup.sh --dry-run: which torch wheel the set-up installs for SDTRAIN_TORCH=cpu (the CPU
# build, never PyPI's default CUDA build) and cuda, the switch between them in an existing venv,
# SDTRAIN_PYTHON (nothing installed), the errors for a bad variant or mode, and that a dry run
# creates nothing.
set -euo pipefail
repo=$1
python=$2
script=$repo/launch/setup.sh
fail() { echo "FAIL: $*" >&2; exit 1; }
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
torch_version=$(sed -n 's/^torch==//p' "$repo/launch/requirements-torch.txt")
[[ -n $torch_version ]] || fail "no torch pin in launch/requirements-torch.txt"

# dry NAME ENV...: runs the dry run with the scratch venv and build folder; stdout+stderr to $out.
dry() {
  local name=$1
  shift
  out=$(env SDTRAIN_VENV="$scratch/venv" SDTRAIN_BUILD_DIR="$scratch/build" "$@" bash "$script" --dry-run 2>&1) ||
    fail "$name: --dry-run exited $?: $out"
}
has() { grep -qF -- "$2" <<<"$out" || fail "$1: no '$2' in: $out"; }
lacks() { ! grep -qF -- "$2" <<<"$out" || fail "$1: '$2' should not be in: $out"; }

# CPU, the default: the +cpu wheel, from a local wheel first, else PyTorch's CPU index.
dry cpu-default
has cpu-default "python3 -m venv $scratch/venv"
has cpu-default "pip install -q --no-index --no-deps torch==$torch_version+cpu"
has cpu-default "torch==$torch_version+cpu --extra-index-url https://download.pytorch.org/whl/cpu"
has cpu-default "-DSDTRAIN_PYTHON=$scratch/venv/bin/python"
has cpu-default "dry run: nothing was changed"
lacks cpu-default "torch==$torch_version "
[[ ! -e $scratch/venv && ! -e $scratch/build ]] || fail "a dry run created the venv or the build folder"

# CUDA: PyPI's plain pin (its Linux wheel is the CUDA build), no CPU index.
dry cuda SDTRAIN_TORCH=cuda
has cuda "pip install -q torch==$torch_version"
lacks cuda "+cpu"
lacks cuda "download.pytorch.org/whl/cpu"

# A venv set up for the other variant: torch is taken out before the pin is installed (a CPU wheel
# satisfies `torch==X`, so pip alone would keep it).
mkdir -p "$scratch/venv/bin"
ln -s "$python" "$scratch/venv/bin/python"
echo "cpu 0000" >"$scratch/venv/.sdtrain-requirements"
dry switch SDTRAIN_TORCH=cuda
has switch "$scratch/venv/bin/python -m pip uninstall -q -y torch"
lacks switch "python3 -m venv"
dry same-variant SDTRAIN_TORCH=cpu
lacks same-variant "uninstall"
[[ $(cat "$scratch/venv/.sdtrain-requirements") == "cpu 0000" ]] || fail "a dry run rewrote the venv's stamp"

# SDTRAIN_PYTHON: that python as it is, no venv and no pip.
dry python SDTRAIN_PYTHON="$python"
has python "python and torch from SDTRAIN_PYTHON: $python"
lacks python "pip install"
has python "-DSDTRAIN_PYTHON=$python"

# Errors: exit 2 naming what was expected.
set +e
out=$(SDTRAIN_TORCH=rocm bash "$script" --dry-run 2>&1); rc=$?
set -e
[[ $rc -eq 2 ]] || fail "SDTRAIN_TORCH=rocm: exit $rc, wanted 2"
has bad-variant "SDTRAIN_TORCH='rocm': expected cpu or cuda"
set +e
out=$(bash "$script" --install 2>&1); rc=$?
set -e
[[ $rc -eq 2 ]] || fail "--install: exit $rc, wanted 2"
has bad-mode "unknown mode '--install' (use --demo, --test or --dry-run)"
echo "ok: setup.sh dry runs (torch $torch_version, cpu and cuda)"
