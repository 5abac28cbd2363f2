#!/usr/bin/env bash
# mpirun launch lines for sdtrain (Open MPI), one rank per GPU. Print one with --dry-run, or run it:
#
#   launch/mpirun_examples.sh single-node GPUS CONFIG [sdtrain args]      one machine, GPUS ranks
#   launch/mpirun_examples.sh multi-node HOSTFILE GPUS CONFIG [args]      hosts listed in HOSTFILE
#                                                                         ("node1 slots=8" lines)
#   launch/mpirun_examples.sh cpu RANKS CONFIG [args]                     CPU ranks (tests, demo)
#   launch/mpirun_examples.sh --dry-run multi-node hosts.txt 8 cfg.pbtxt  print, do not run
#
# Every line resumes from the newest checkpoint (--resume auto), so the same command restarts a
# stopped job. mpirun forwards SIGUSR1 to every rank: `kill -USR1 <mpirun pid>` makes all ranks
# checkpoint at the end of the optimizer step after the current one and exit with 75. Each rank
# takes the GPU of its local rank; NCCL_* variables and SDTRAIN_FAULTS (docs/fault-injection.md)
# of this shell are passed on (docs/multi-node.md).
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
sdtrain=${SDTRAIN_BIN:-$repo/build/bin/sdtrain}
dry_run=0
if [[ ${1:-} == --dry-run ]]; then
  dry_run=1
  shift
fi
usage() { sed -n '2,9p' "${BASH_SOURCE[0]}" >&2; exit 2; }
[[ $# -ge 3 ]] || usage
mode=$1
shift

command=(mpirun --bind-to none)
[[ $(id -u) -eq 0 ]] && command+=(--allow-run-as-root)
case $mode in
  single-node)
    command+=(-np "$1" --map-by "ppr:$1:node")
    shift
    ;;
  multi-node)
    [[ $# -ge 3 ]] || usage
    hosts=$(grep -cv '^\s*\(#\|$\)' "$1")
    command+=(--hostfile "$1" -np $((hosts * $2)) --map-by "ppr:$2:node")
    shift 2
    ;;
  cpu)
    command+=(-np "$1" --oversubscribe -x OMP_NUM_THREADS=1)
    shift
    ;;
  *) usage ;;
esac
for name in $(compgen -e | grep -E '^(NCCL_|SDTRAIN_FAULTS$)' || true); do command+=(-x "$name"); done
command+=("$sdtrain" --config "$1" --resume auto "${@:2}")

if [[ $dry_run -eq 1 ]]; then
  printf '%q ' "${command[@]}"
  printf '\n'
  exit 0
fi
exec "${command[@]}"
