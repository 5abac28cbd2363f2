#!/usr/bin/env bash
# Run HERE (a Debian 12 machine with network), before a session on the lent GPU machine:
# downloads what that machine lacks to build sdtrain and run its GPU checks into .device-bundle/
#   debs/    the Debian 12 .deb files of the build dependencies (protobuf, boost program_options,
#            Open MPI and its runtime libraries, jpeg/png/webp, gtest/gmock, nlohmann-json, libzip,
#            libarchive, utf8proc, openssl, zlib, pkgconf); launch/gpu/run_on_device.sh unpacks them with
#            dpkg -x into .device-bundle/root there (never into /).
#   wheels/  the pure-Python diffusers wheel (the reference side of bench/train/bench_train_step.py)
#            and the wheels it imports that a torch + transformers install may lack (requests & co.).
#   MANIFEST what was fetched, with sizes.
# .device-bundle/ is ignored through .git/info/exclude (this script adds it there), so it travels
# only as a carried path: run tool with carry [".device-bundle"]; it must stay well under 60 MiB
# (the whole tree plus carried paths may be 64 MiB). Takes ~1 minute; idempotent (re-downloads).
#   launch/gpu/fetch_bundle.sh
# Environment: SDTRAIN_BUNDLE_PYTHON (a python with pip; default .venv/bin/python, else python3).
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
bundle=$repo/.device-bundle
say() { printf '[fetch_bundle] %s\n' "$*" >&2; }

# Debian 12 package names. Runtime libraries are fetched even when Ubuntu has them under the same
# soname: run_on_device.sh drops the ones the device's linker cache already provides.
debs=(
  # protobuf 3.21 (headers, libprotobuf.so.32, protoc)
  libprotobuf-dev protobuf-compiler libprotobuf32 libprotobuf-lite32 libprotoc32
  # boost program_options 1.74 (+ the boost headers and BoostConfig.cmake it needs)
  libboost-program-options-dev libboost-program-options1.74-dev libboost-program-options1.74.0
  libboost1.74-dev
  # Open MPI 4.1 (headers, wrappers, mpirun/orted) and what libmpi and its components load
  libopenmpi-dev openmpi-bin openmpi-common libopenmpi3 libpmix2 libhwloc15
  libevent-core-2.1-7 libevent-pthreads-2.1-7 libmunge2 libudev1 libfabric1 libucx0 libpsm2-2
  libpsm-infinipath1 libibverbs1 librdmacm1 libnl-3-200 libnl-route-3-200 libnuma1 libltdl7
  # images
  libjpeg62-turbo libjpeg62-turbo-dev libpng-dev libpng16-16 libwebp-dev libwebp7 libwebpdemux2
  libwebpmux3
  # tests, json, zip, unicode, crypto, zlib
  libgtest-dev libgmock-dev googletest nlohmann-json3-dev libzip-dev libzip4 libbz2-1.0 libbz2-dev
  libutf8proc-dev libutf8proc2 libssl-dev libssl3 zlib1g-dev zlib1g
  # tar shards (the webdataset plugin): libarchive and the libraries it loads
  libarchive-dev libarchive13 libacl1 liblz4-1 liblzma5 libnettle8 libxml2 libzstd1 libicu72
  # pkg-config (CMake's FindPkgConfig needs one; the device image may have none)
  pkgconf pkgconf-bin libpkgconf3 pkg-config
)
# diffusers' Requires-Dist: importlib_metadata (imported only on Python < 3.8), filelock, huggingface-hub,
# numpy, regex, safetensors, Pillow come with torch/transformers there; requests (imported at
# `import diffusers`, version-checked) and its dependencies may not. Versions: those of .venv here.
wheels=(diffusers==0.42.1 requests==2.34.2 urllib3==2.8.0 idna==3.20 charset-normalizer==3.5.3
        certifi==2026.10.19.post1)

rm -rf "$bundle/debs" "$bundle/wheels" "$bundle/root"
mkdir -p "$bundle/debs" "$bundle/wheels"
# Through git: in a worktree .git is a file, and info/exclude lives in the common git folder.
exclude=$(git -C "$repo" rev-parse --path-format=absolute --git-path info/exclude)
mkdir -p "$(dirname "$exclude")"
grep -qxF '/.device-bundle/' "$exclude" 2>/dev/null || echo '/.device-bundle/' >>"$exclude"

# --- 1. .deb files ------------------------------------------------------------------------------
apt_opts=()
if ! compgen -G "/var/lib/apt/lists/*_Packages*" >/dev/null; then
  # No package lists: a private apt state (no root needed), filled from the system's sources.
  state=$bundle/.apt-state
  mkdir -p "$state/lists/partial" "$state/cache/archives/partial"
  apt_opts=(-o Dir::State::Lists="$state/lists" -o Dir::Cache="$state/cache" -o Debug::NoLocking=1)
  say "no apt lists on this machine: apt-get update into $state"
  apt-get "${apt_opts[@]}" update -qq
fi
say "downloading ${#debs[@]} Debian packages"
(cd "$bundle/debs" && apt-get "${apt_opts[@]}" download -qq "${debs[@]}")

# --- 2. wheels ------------------------------------------------------------------------------------
python=${SDTRAIN_BUNDLE_PYTHON:-}
[[ -n $python ]] || { [[ -x $repo/.venv/bin/python ]] && python=$repo/.venv/bin/python || python=python3; }
say "downloading wheels for CPython 3.12 x86-64: ${wheels[*]}"
"$python" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
  --platform manylinux_2_28_x86_64 --platform manylinux2014_x86_64 --platform any \
  --dest "$bundle/wheels" "${wheels[@]}"

# --- 3. manifest and size -------------------------------------------------------------------------
(cd "$bundle" && find debs wheels -type f -printf '%s\t%p\n' | sort -k2) >"$bundle/MANIFEST"
rm -rf "$bundle/.apt-state"
total=$(du -sb "$bundle" | cut -f1)
say "$(ls "$bundle/debs" | wc -l) debs, $(ls "$bundle/wheels" | wc -l) wheels, $((total / 1024 / 1024)) MiB ($total bytes) in $bundle"
if ((total > 60 * 1024 * 1024)); then say "too big for the 64 MiB carry budget"; exit 1; fi
