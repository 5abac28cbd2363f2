#!/usr/bin/env bash
# Installs sdtrain, builds examples/caption_files_dataset out of tree against the install with
# find_package(sdtrain), and trains a few steps with it using the installed sdtrain binary. The
# install holds only the public headers: a plugin that includes an internal one does not build.
#   example_plugin_test.sh BUILD_DIR SOURCE_DIR PYTHON
set -euo pipefail
build=$1 source=$2 python=$3
work=$build/test_scratch/example_plugin
rm -rf "$work" && mkdir -p "$work"

cmake --install "$build" --prefix "$work/install" >"$work/install.log"
cmake -S "$source/examples/caption_files_dataset" -B "$work/plugin" -G Ninja \
      -DCMAKE_PREFIX_PATH="$work/install" -DSDTRAIN_PYTHON="$python" >"$work/configure.log"
cmake --build "$work/plugin" >"$work/build.log"
plugin=$work/plugin/libcaption_files_dataset.so
test -f "$plugin"

# Only include/sdtrain is installed, and an internal header is not reachable from a plugin.
installed=$(ls "$work/install/include")
[[ $installed == sdtrain ]] || { echo "installed include folders: $installed (expected only sdtrain)"; exit 1; }
mkdir -p "$work/internal_src"
cat >"$work/internal_src/CMakeLists.txt" <<'CMAKE'
cmake_minimum_required(VERSION 3.22)
project(internal_include LANGUAGES CXX)
find_package(sdtrain 0.1 REQUIRED)
sdtrain_add_plugin(internal_include SOURCES internal.cpp)
CMAKE
printf '#include "sdtrain/plugin.h"\n#include "framework/train/trainer.h"\nSDTRAIN_PLUGIN_LIBRARY()\n' \
  >"$work/internal_src/internal.cpp"
cmake -S "$work/internal_src" -B "$work/internal" -G Ninja -DCMAKE_PREFIX_PATH="$work/install" \
      -DSDTRAIN_PYTHON="$python" >"$work/internal_configure.log"
if cmake --build "$work/internal" >"$work/internal_build.log" 2>&1; then
  echo "a plugin including framework/train/trainer.h built against the install"; exit 1
fi
grep -q "framework/train/trainer.h: No such file" "$work/internal_build.log" || {
  cat "$work/internal_build.log"; echo "the build failed for another reason than the internal header"; exit 1; }

# Eight captioned images in the kohya layout (photo.png + photo.txt).
"$python" - "$work/images" <<'PY'
import os, sys
from PIL import Image
root = sys.argv[1]
os.makedirs(root)
for i, (name, rgb) in enumerate([("red", (220, 20, 20)), ("blue", (20, 20, 220))] * 4):
    Image.new("RGB", (24, 24), rgb).save(os.path.join(root, f"img{i}.png"))
    open(os.path.join(root, f"img{i}.txt"), "w").write(f"a {name} square\n")
PY

cat >"$work/cfg.pbtxt" <<CFG
plugin_libraries: "$plugin"
plugin_libraries: "$build/lib/libsdtrain_test_plugins.so"
run { output_dir: "out" max_steps: 3 checkpoint_every_n_steps: 0 }
model { type: "test_tiny_denoiser" }
data {
  train {
    type: "caption_files"
    options { [type.googleapis.com/my_datasets.CaptionFilesOptions] { root: "images" } }
  }
  batch_size: 2
  num_workers: 1
  transforms { resolution: 16 }
}
CFG
"$work/install/bin/sdtrain" --list-plugins --plugin "$plugin" | grep -q "caption_files"
"$work/install/bin/sdtrain" --config "$work/cfg.pbtxt"
test -f "$work/out/checkpoints/step-00000003/manifest.json"
echo "example plugin trained 3 steps"
