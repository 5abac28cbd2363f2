#!/usr/bin/env bash
# The recipe's job rehearsed at full size on the CPU, one rank (slow; not part of CI):
#   1. a checkpoint with the exact layout of sd-v1-4-full-ema.ckpt at full size, random weights
#      (make_full_size_ckpt.py);
#   2. sdtrain --config configs/three_kingdoms.pbtxt with overrides for a reduced resolution, batch
#      1, no accumulation, 2 steps, on demo images: the file is read lazily, a validation grid and
#      the train split (the batch, its reconstruction, samples for its caption) are drawn at the
#      first step, a checkpoint is written;
#   3. the run resumes (--resume auto) for a third step, writes its final checkpoint and the
#      diffusers export (EMA weights), which diffusers then loads and samples from
#      (tests/train/check_export.py: the exported UNet equals the checkpoint's EMA weights);
#   4. the peak resident memory of each run (GNU time), with the breakdown of the training state.
#
# Usage: launch/rehearsal/full_size.sh [WORK_DIR] [RESOLUTION]
#   WORK_DIR   where the model, data and run go (default: ../rehearsal beside the checkout);
#              about 45 GB of disk at the peak
#   RESOLUTION data.transforms.resolution (default 256, the portraits' size)
# Environment: SDTRAIN_BUILD (default build), SDTRAIN_PYTHON (default .venv/bin/python).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
BUILD="${SDTRAIN_BUILD:-$ROOT/build}"
PYTHON="${SDTRAIN_PYTHON:-$ROOT/.venv/bin/python}"
WORK="$(mkdir -p "${1:-$ROOT/../rehearsal}" && cd "${1:-$ROOT/../rehearsal}" && pwd)"
RESOLUTION="${2:-256}"
CKPT="$WORK/models/sd-v1-4-full-ema.ckpt"
RUN="$WORK/run"

say() { printf '\n== %s (%s)\n' "$*" "$(date +%T)"; }

if [[ ! -f "$CKPT" ]]; then
  say "writing a full-size checkpoint in the layout of sd-v1-4-full-ema.ckpt"
  mkdir -p "$WORK/models"
  "$PYTHON" "$ROOT/launch/rehearsal/make_full_size_ckpt.py" --sdconvert "$BUILD/bin/sdconvert" --out "$CKPT"
fi
if [[ ! -d "$WORK/data" ]]; then
  "$BUILD/bin/sddemodata" --out "$WORK/data" --count 8 --size "$RESOLUTION"
fi
rm -rf "$RUN"

# The recipe's config, changed only where a 2-core, 24 GB machine needs it.
common=(--config "$ROOT/configs/three_kingdoms.pbtxt"
        --set "run.output_dir=$RUN" --set "model.options.weights=$CKPT"
        --set "data.train.options.root=$WORK/data" --set "data.transforms.resolution=$RESOLUTION"
        --set data.batch_size=1 --set data.num_workers=1 --set gradient_accumulation_steps=1
        --set run.log_every_n_steps=1 --set run.checkpoint_every_n_steps=2
        # The image logger at the first step (4 prompts; the train split of the one-image batch),
        # DDIM with 4 steps instead of 200.
        --set "callbacks[3].options.steps=4")

# Samples the sdtrain process's anonymous and file-backed resident memory (kB) every 0.2 s into
# $1 until killed. GNU time's maximum RSS counts the resident pages of the mapped weights file as
# well (each tensor's pages leave the process once the tensor is copied and dropped).
sample_rss() {
  while true; do
    for pid in $(pgrep -x sdtrain); do
      awk '/RssAnon/ {a = $2} /RssFile/ {f = $2} END {if (a) print a, f}' "/proc/$pid/status" 2>/dev/null
    done
    sleep 0.2
  done >"$1"
}

# Runs sdtrain under GNU time; prints its peaks and sets PEAK_GIB (total RSS) and ANON_GIB.
timed_run() {
  local log="$1"; shift
  sample_rss "$log.rss" & local sampler=$!
  /usr/bin/time -v -o "$log.time" "$BUILD/bin/sdtrain" "$@" 2>&1 | tee "$log"
  kill "$sampler"
  local kib
  kib=$(awk -F': ' '/Maximum resident set size/ {print $2}' "$log.time")
  PEAK_GIB=$(awk -v k="$kib" 'BEGIN {printf "%.2f", k / 1048576}')
  ANON_GIB=$(awk '$1 > a {a = $1} END {printf "%.2f", a / 1048576}' "$log.rss")
  echo "peak RSS: $PEAK_GIB GiB (anonymous: $ANON_GIB GiB, the rest pages of the mapped weights file)," \
       "wall: $(awk -F': ' '/Elapsed \(wall clock\)/ {print $2}' "$log.time")"
}

say "run 1: two steps, a validation grid at the first, a checkpoint at the second"
timed_run "$WORK/run1.log" "${common[@]}" --set run.max_steps=2 --set final_export.folder=
PEAK1=$PEAK_GIB ANON1=$ANON_GIB
ls "$RUN/images/validation/"samples_gs-000001_*.png
ls "$RUN/images/train/"{inputs,reconstruction,samples,samples_cfg_scale_3.00}_gs-000001_*.png
ls -d "$RUN/checkpoints/step-00000002"

say "run 2: resumed, a third step, the final checkpoint and the diffusers export"
timed_run "$WORK/run2.log" "${common[@]}" --set run.max_steps=3 --resume auto
PEAK2=$PEAK_GIB ANON2=$ANON_GIB
grep -q "resumed from .*step-00000002" "$RUN/logs/rank-00000.log" || { echo "run 2 did not resume"; exit 1; }
LAST="$RUN/checkpoints/step-00000003"

say "diffusers loads the export and samples; its UNet equals the checkpoint's EMA weights"
"$PYTHON" "$ROOT/tests/train/check_export.py" "$RUN/three_kingdoms_diffusers" \
  --equals "$LAST/ema.safetensors" --differs "$LAST/model.safetensors"

say "memory"
params=$(grep -o "[0-9]* parameters on" "$RUN/logs/rank-00000.log" | head -1 | awk '{print $1}')
awk -v p="$params" -v peak1="$PEAK1" -v peak2="$PEAK2" -v anon1="$ANON1" -v anon2="$ANON2" 'BEGIN {
  g = 2^30
  printf "trained parameters: %d (%.1f M)\n", p, p / 1e6
  printf "  weights fp32      %6.2f GiB\n", 4 * p / g
  printf "  gradients fp32    %6.2f GiB\n", 4 * p / g
  printf "  AdamW moments     %6.2f GiB\n", 8 * p / g
  printf "  EMA fp32          %6.2f GiB\n", 4 * p / g
  printf "  training state    %6.2f GiB\n", 20 * p / g
  printf "peak RSS run 1 (from the file, grid, checkpoint): %s GiB, anonymous %s GiB\n", peak1, anon1
  printf "peak RSS run 2 (resume, checkpoint, export):      %s GiB, anonymous %s GiB\n", peak2, anon2
  printf "rest of the anonymous peak (frozen VAE + text encoder, activations, loader, allocator): %.2f GiB\n",
         (anon1 > anon2 ? anon1 : anon2) - 20 * p / g
}'
echo "OK"
