#!/usr/bin/env bash
# The demo job: writes the demo image folder once, then fine-tunes on it with MPI ranks on the CPU.
#   launch/run_demo.sh [extra sdtrain arguments, e.g. --set run.max_steps=50]
# SDTRAIN_DEMO_RANKS (default 2) sets the number of ranks.
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build_dir=${SDTRAIN_BUILD_DIR:-$repo/build}
data=$repo/runs/demo/data
if [[ ! -f $data/metadata.csv ]]; then
  "$build_dir/bin/sddemodata" --out "$data" --count 512 --size 64 --seed 0
fi
mpirun_args=(-np "${SDTRAIN_DEMO_RANKS:-2}" --oversubscribe --bind-to none -x OMP_NUM_THREADS=1)
[[ $(id -u) -eq 0 ]] && mpirun_args+=(--allow-run-as-root)
cd "$repo"
exec mpirun "${mpirun_args[@]}" "$build_dir/bin/sdtrain" --config "$repo/configs/demo.pbtxt" "$@"
