#!/usr/bin/env bash
# Runs the built NCCL world-size-1 tests (BUILD_DIR/bin/nccl_gpu_tests) on a GPU machine, in two
# parts, each under a timeout of its own so that a hang costs minutes at most:
#   1. every test except the death tests, in one process               (SDTRAIN_NCCL_TIMEOUT_S, 180)
#   2. each death test (suites named *DeathTest) alone, in a fresh process with MPI's job
#      environment cleared                                     (SDTRAIN_NCCL_DEATH_TIMEOUT_S, 60)
# Why apart: a death test re-executes the binary (threadsafe style: CUDA does not survive fork),
# and the child initialises MPI again. After MPI_Init, Open MPI and PMIx have written the job's
# identity (OMPI_*, PMIX_* ...) into the process's environment; a child that inherits it tries to
# join that job instead of starting its own and can hang in MPI_Init, forever. Launchers (mpirun,
# srun) leave the same kind of variables behind. Only the installation's settings are kept: the
# MCA component selections and the prefixes of a relocated Open MPI/PMIx (launch/gpu/run_on_device.sh).
#   launch/gpu/run_nccl_tests.sh BUILD_DIR [LOG_DIR]        (LOG_DIR default: BUILD_DIR)
# Writes LOG_DIR/nccl_gpu_tests.xml and one LOG_DIR/nccl_gpu_<death test>.xml each; the output goes
# to stdout ("[nccl] ..." lines carry the timed UNet-gradient allreduce). Exit status: 0 all
# passed, 124 a part timed out, else the failing part's status.
set -euo pipefail

build_dir=${1:?usage: run_nccl_tests.sh BUILD_DIR [LOG_DIR]}
logs=${2:-$build_dir}
tests=$build_dir/bin/nccl_gpu_tests
say() { printf '[run_nccl_tests] %s\n' "$*" >&2; }
[[ -x $tests ]] || { say "no $tests: build the target nccl_gpu_tests first"; exit 1; }
mkdir -p "$logs"
export NCCL_DEBUG=${NCCL_DEBUG:-WARN} OMP_NUM_THREADS=1

# The environment a fresh MPI job starts from: the variables of a job (launcher or initialised
# MPI) removed, the installation's kept.
clean_env=(env)
keep='^(OMPI_MCA_(btl|pml|mtl|osc|btl_base_warn_component_unused)|OMPI_ALLOW_RUN_AS_ROOT(_CONFIRM)?|OPAL_PREFIX|PMIX_PREFIX|PMIX_PKGLIBDIR)$'
for name in $(compgen -e); do
  if [[ $name =~ ^(OMPI_|OPAL_|ORTE_|PMIX_|PMI_|SLURM_|HYDRA_|I_MPI_|MPI_LOCALRANKID$|MPI_LOCALNRANKS$) && ! $name =~ $keep ]]; then
    clean_env+=(-u "$name")
  fi
done

status=0
say "tests except the death tests (timeout ${SDTRAIN_NCCL_TIMEOUT_S:-180} s)"
timeout -k 10 "${SDTRAIN_NCCL_TIMEOUT_S:-180}" "${clean_env[@]}" "$tests" --gtest_filter='-*DeathTest.*' \
  --gtest_output="xml:$logs/nccl_gpu_tests.xml" || status=$?

death_tests=$("$tests" --gtest_list_tests --gtest_filter='*DeathTest.*' |
              awk '/^[^ ]/ {suite = $1} /^  / && suite ~ /DeathTest\.$/ {print suite $1}')
[[ -n $death_tests ]] || { say "no death tests listed (suites named *DeathTest)"; exit 1; }
for name in $death_tests; do
  say "$name alone, MPI's job environment cleared (timeout ${SDTRAIN_NCCL_DEATH_TIMEOUT_S:-60} s)"
  timeout -k 10 "${SDTRAIN_NCCL_DEATH_TIMEOUT_S:-60}" "${clean_env[@]}" "$tests" --gtest_filter="$name" \
    --gtest_output="xml:$logs/nccl_gpu_${name//./_}.xml" || { rc=$?; [[ $status -ne 0 ]] || status=$rc; }
done
[[ $status -eq 0 ]] && say "all NCCL world-size-1 tests passed" || say "FAILED (exit $status)"
exit "$status"
