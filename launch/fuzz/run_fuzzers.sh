#!/usr/bin/env bash
# Builds the libFuzzer targets of tests/fuzz (clang, AddressSanitizer + UndefinedBehaviorSanitizer
# on all of libsdtrain and the built-in plugins) and runs each for a given time. Not part of CI,
# which replays the regression corpus instead (ctest -L fuzz).
#
# Usage: launch/fuzz/run_fuzzers.sh [SECONDS_PER_TARGET] [TARGET ...]
#   SECONDS_PER_TARGET  default 600
#   TARGET              config safetensors ckpt image metadata tokenizer tar parquet (default: all)
# Environment: SDTRAIN_FUZZ_BUILD (default build-fuzz), SDTRAIN_PYTHON (default .venv/bin/python),
#              CC / CXX (default clang-14 / clang++-14: apt-get install clang-14 libclang-rt-14-dev).
#
# Each target keeps a growing corpus in build-fuzz/fuzz-results/<target>/corpus, seeded from the
# test fixtures (the io and image fixture scripts, configs/, the regression corpus); a finding
# lands in build-fuzz/fuzz-results/<target>/findings/ and makes the script exit 1 after all
# targets ran. Copy a finding (once fixed) to tests/fuzz/regressions/<target>/ so CI replays it.
# Executions, corpus size and findings per target are appended to build-fuzz/fuzz-results/summary.txt.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
BUILD="${SDTRAIN_FUZZ_BUILD:-$ROOT/build-fuzz}"
PYTHON="${SDTRAIN_PYTHON:-$ROOT/.venv/bin/python}"
SECONDS_PER_TARGET="${1:-600}"
shift || true
TARGETS=("$@")
[[ ${#TARGETS[@]} -gt 0 ]] || TARGETS=(config safetensors ckpt image metadata tokenizer tar parquet)
RESULTS="$BUILD/fuzz-results"

export CCACHE_BASEDIR="$ROOT"
export CCACHE_SLOPPINESS="${CCACHE_SLOPPINESS:-pch_defines,time_macros,include_file_mtime,include_file_ctime}"
if [[ ! -f "$BUILD/build.ninja" ]]; then
  cmake -S "$ROOT" -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DSDTRAIN_FUZZ=ON \
        -DSDTRAIN_BUILD_BENCH=OFF -DSDTRAIN_PYTHON="$PYTHON" \
        -DCMAKE_C_COMPILER="${CC:-clang-14}" -DCMAKE_CXX_COMPILER="${CXX:-clang++-14}" \
        -DCMAKE_CXX_COMPILER_LAUNCHER=ccache -DCMAKE_C_COMPILER_LAUNCHER=ccache >/dev/null
fi
ninja -C "$BUILD" "${TARGETS[@]/#/fuzz_}"

# Seeds: what the tests read, generated as the tests generate it.
SEEDS="$BUILD/fuzz-seeds"
if [[ ! -d "$SEEDS" ]]; then
  mkdir -p "$SEEDS/config" "$SEEDS/metadata" "$SEEDS/tokenizer"
  "$PYTHON" "$ROOT/tests/io/make_io_fixtures.py" --out "$SEEDS/io" >/dev/null
  "$PYTHON" "$ROOT/tests/data/make_image_fixtures.py" --out "$SEEDS/image" >/dev/null
  # Their expected outputs (raw pixels, JSON) are no input of the decoder: 56 files of 1.3 MB.
  rm -f "$SEEDS"/image/*.rgb "$SEEDS"/image/*.json
  "$PYTHON" "$ROOT/tests/data/make_shard_fixtures.py" --out "$SEEDS/shards" >/dev/null 2>&1
  mkdir -p "$SEEDS/tar" "$SEEDS/parquet"
  cp "$SEEDS"/shards/wds/*.tar "$SEEDS"/shards/bad/*.tar "$SEEDS/tar/"
  cp "$SEEDS"/shards/parquet/*.parquet "$SEEDS"/shards/bad/*.parquet "$SEEDS/parquet/"
  cp "$ROOT"/configs/*.pbtxt "$SEEDS/config/"
  printf 'file_name,text\nimg0.png,"a red square, large"\nimg1.png,a blue circle\n' >"$SEEDS/metadata/metadata.csv"
  printf '{"file_name": "img0.png", "text": "a red square"}\n{"file_name": "img1.png", "text": null}\n' \
    >"$SEEDS/metadata/metadata.jsonl"
  grep -ho 'prompts: "[^"]*"' "$ROOT"/configs/*.pbtxt | sed 's/prompts: "\(.*\)"/\1/' |
    awk '{ print > ("'"$SEEDS"'/tokenizer/prompt" NR ".txt") }'
fi
seeds_of() {
  case "$1" in
    safetensors|ckpt) echo "$SEEDS/io" ;;
    *) echo "$SEEDS/$1" ;;
  esac
}

# Longest input per target (-max_len), where the default (the largest seed, grown by libFuzzer)
# wastes the run: the tokenizer's regression inputs are 6 KB single words and mojibake lines, and a
# corpus grown to 12 KB ran 21 inputs a second under the sanitizers against 2,000 for short ones;
# the long inputs stay covered by the regression corpus, which every run replays first.
max_len_of() {
  case "$1" in
    tokenizer) echo "-max_len=2048" ;;
    *) ;;
  esac
}

# Allocation stacks kept by AddressSanitizer (malloc_context_size, 30 frames by default) where
# the allocations come from uninstrumented libraries (libarchive from Debian, Arrow from the
# pyarrow wheel): their stacks, walked through frames without frame pointers, kept adding
# entries to the sanitizer's stack depot until storing them took 38% of the parquet target's time
# after 40 minutes (10% at the start; the rate fell from 2.7 k to 1.1 k a second, RSS grew to
# 1.1 GB). With two frames: 3% after 10 minutes, RSS 0.6 GB. A report then names the allocating
# function and its caller; run the finding again without this setting for the whole stack.
asan_options_of() {
  case "$1" in
    tar|parquet) echo "malloc_context_size=2${ASAN_OPTIONS:+:$ASAN_OPTIONS}" ;;
    *) echo "${ASAN_OPTIONS:-}" ;;
  esac
}

status=0
mkdir -p "$RESULTS"
for target in "${TARGETS[@]}"; do
  dir="$RESULTS/$target"
  mkdir -p "$dir/corpus" "$dir/findings"
  echo "== fuzzing $target for ${SECONDS_PER_TARGET}s ($(date +%T))"
  # 4 GB of memory per process and 2 GB per allocation: a reader must refuse a bomb before it
  # allocates; 10 s per input: anything slower is a hang. An input over 2 s is kept as a finding
  # too (slow-unit-*): the quadratic tokenizer paths took 1-9 s per input here, never 10.
  ASAN_OPTIONS="$(asan_options_of "$target")" "$BUILD/bin/fuzz_$target" -max_total_time="$SECONDS_PER_TARGET" -rss_limit_mb=4096 -malloc_limit_mb=2048 \
    -timeout=10 -report_slow_units=2 -print_final_stats=1 $(max_len_of "$target") \
    -artifact_prefix="$dir/findings/" "$dir/corpus" "$(seeds_of "$target")" "$ROOT/tests/fuzz/regressions/$target" \
    >"$dir/log.txt" 2>&1 || true
  # A slow unit may only have met a busy machine (a parquet input took 3 s once while a build ran
  # beside it, 15 ms again): each is run again alone and set aside when it is fast then.
  for unit in "$dir"/findings/slow-unit-*; do
    [[ -e "$unit" ]] || continue
    ms=$("$BUILD/bin/fuzz_$target" -runs=1 "$unit" 2>&1 | awk '/^Executed .* in [0-9]+ ms/ {print $(NF-1)}' | tail -1)
    if [[ -n "$ms" && "$ms" -lt 2000 ]]; then
      mkdir -p "$dir/slow-not-reproduced"
      mv "$unit" "$dir/slow-not-reproduced/"
      echo "$(basename "$unit"): ${ms} ms when run again alone, set aside in $dir/slow-not-reproduced"
    fi
  done
  runs=$(awk '/stat::number_of_executed_units/ {s += $2} END {print s + 0}' "$dir/log.txt")
  findings=$(find "$dir/findings" -type f | wc -l)
  corpus=$(find "$dir/corpus" -type f | wc -l)
  printf '%s\t%s\t%s s\t%s executions\tcorpus %s\tfindings %s\n' "$(date +%F)" "$target" "$SECONDS_PER_TARGET" \
    "$runs" "$corpus" "$findings" | tee -a "$RESULTS/summary.txt"
  if [[ $findings -gt 0 ]]; then
    status=1
    ls "$dir/findings"
  fi
done
exit $status
