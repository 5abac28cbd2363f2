#!/usr/bin/env bash
# launch/gpu/run_on_device.sh without a GPU, a bundle or a build: its --dry-run plan (the stages of
# each mode with their expected times, a total that fits one call of the device budget) and its
# argument errors.
set -euo pipefail
script=$1/launch/gpu/run_on_device.sh
fail() { echo "FAIL: $*" >&2; exit 1; }
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
run() { SDTRAIN_BUILD_DIR=$scratch/build bash "$script" "$@"; }

# The budget the script stops itself at: one call of the device tool runs at most 600 s.
budget=$(sed -n 's/.*SDTRAIN_DEVICE_BUDGET_S:-\([0-9]*\)}.*/\1/p' "$script" | head -1)
[[ -n $budget && $budget -le 600 ]] || fail "default SDTRAIN_DEVICE_BUDGET_S '$budget' is not <= 600 s"

# check_plan NAME "expected stages" ARGS...: the stages in order, each with its seconds, and a
# total that is their sum and fits the budget. Prints the total.
check_plan() {
  local name=$1 wanted=$2 output stages total sum
  shift 2
  output=$(run --dry-run "$@") || fail "$name: --dry-run exited $?"
  stages=$(awk '$2 ~ /^[0-9]+$/ && $3 == "s" && $1 != "total" {print $1}' <<<"$output" | tr '\n' ' ')
  [[ $stages == "$wanted " ]] || fail "$name: stages '$stages', wanted '$wanted'"
  sum=$(awk '$2 ~ /^[0-9]+$/ && $3 == "s" && $1 != "total" {s += $2} END {print s}' <<<"$output")
  total=$(awk '$1 == "total" && $3 == "s" {print $2}' <<<"$output")
  [[ $total == "$sum" ]] || fail "$name: total $total is not the sum of the stages ($sum)"
  [[ $total -le $budget ]] || fail "$name: total $total s exceeds the budget of $budget s"
  # Every stage says what its estimate rests on.
  awk '$2 ~ /^[0-9]+$/ && $3 == "s" && NF < 5 {exit 1}' <<<"$output" || fail "$name: a stage without its basis"
  echo "ok: $name: $stages($total s of $budget)" >&2
  echo "$total"
}
default_total=$(check_plan "default" "machine unpack env configure build nccl bench demo")
quick_total=$(check_plan "--quick" "machine unpack env configure build nccl bench" --quick)
[[ $quick_total -lt $default_total ]] || fail "--quick ($quick_total s) is not shorter than the default ($default_total s)"
check_plan "--stages bench" "machine unpack env configure build bench" --stages bench >/dev/null
check_plan "--stages=nccl,demo" "machine unpack env configure build nccl demo" --stages=nccl,demo >/dev/null
check_plan "--configure-only" "unpack env configure" --configure-only >/dev/null
[[ ! -e $scratch/build ]] || fail "--dry-run created $scratch/build"

# expect_usage_error NAME "text the message must hold" ARGS...
expect_usage_error() {
  local name=$1 text=$2 code=0 output
  shift 2
  output=$(run "$@" 2>&1) || code=$?
  [[ $code -eq 2 ]] || fail "$name: exit $code, wanted 2"
  [[ $output == *"$text"* ]] || fail "$name: message '$output' does not say '$text'"
  echo "ok: $name" >&2
}
expect_usage_error "unknown argument" "unknown argument '--bogus'" --dry-run --bogus
expect_usage_error "--stages without a value" "--stages needs a value" --stages
expect_usage_error "--stages followed by a flag" "--stages needs a value" --stages --dry-run
expect_usage_error "unknown stage" "--stages: unknown stage 'nccl2'" --dry-run --stages bench,nccl2
expect_usage_error "demo with --quick" "--stages: demo is not part of --quick" --dry-run --quick --stages demo
SDTRAIN_DEVICE_BUDGET_S=ten expect_usage_error "bad budget" "SDTRAIN_DEVICE_BUDGET_S: 'ten'"
[[ ! -e $scratch/build/gpu-logs.tar.gz ]] || fail "a usage error went on to run stages"

help=$(run --help) || fail "--help exited $?"
for word in --quick --stages --dry-run --fresh --configure-only gpu-logs.tar.gz; do
  [[ $help == *"$word"* ]] || fail "--help does not mention $word"
done
echo "ok: --help" >&2
