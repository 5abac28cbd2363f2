#!/usr/bin/env bash
# Installs sdtrain, builds examples/caption_files_dataset out of tree against the install with
# find_package(sdtrain), and trains a few steps with it using the installed sdtrain binary.
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
