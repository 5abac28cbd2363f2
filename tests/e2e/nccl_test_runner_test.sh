#!/usr/bin/env bash
# launch/gpu/run_nccl_tests.sh against a stand-in for nccl_gpu_tests (no GPU, no build): the death
# tests run apart, one process each, with MPI's job environment cleared but the installation's
# settings kept; every part has its own timeout, so a hanging death test ends the run in seconds.
set -euo pipefail
runner=$1/launch/gpu/run_nccl_tests.sh
fail() { echo "FAIL: $*" >&2; exit 1; }
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
mkdir -p "$scratch/build/bin"
calls=$scratch/calls
# The stand-in records each call's filter and the MPI variables it saw; HANG_DEATH makes the
# death test hang.
cat >"$scratch/build/bin/nccl_gpu_tests" <<EOF
#!/usr/bin/env bash
filter=
for arg in "\$@"; do [[ \$arg == --gtest_filter=* ]] && filter=\${arg#--gtest_filter=}; done
if [[ " \$* " == *" --gtest_list_tests "* ]]; then
  printf 'NcclWorldSizeOne.\n  AutoPicksNcclOnCuda\nNcclWorldSizeOneDeathTest.\n  ATimedOutCollectiveAbortsNamingRankAndCollective\n  SecondDeath\n'
  exit 0
fi
echo "filter=\$filter rank=\${OMPI_COMM_WORLD_RANK:-} pmix=\${PMIX_RANK:-} slurm=\${SLURM_PROCID:-} opal=\${OPAL_PREFIX:-} btl=\${OMPI_MCA_btl:-} pmixdir=\${PMIX_PKGLIBDIR:-}" >>"$calls"
[[ \$filter == NcclWorldSizeOneDeathTest.* && -n \${HANG_DEATH:-} ]] && sleep 1000
exit 0
EOF
chmod +x "$scratch/build/bin/nccl_gpu_tests"

# A job's variables (as an initialised Open MPI singleton or a launcher leaves them) and the
# installation's settings (as launch/gpu/device_env.sh exports them).
job_env=(OMPI_COMM_WORLD_RANK=0 PMIX_RANK=0 SLURM_PROCID=0 OPAL_PREFIX=/opt/ompi OMPI_MCA_btl='^openib'
         PMIX_PKGLIBDIR=/opt/pmix)
env "${job_env[@]}" bash "$runner" "$scratch/build" "$scratch/logs" 2>"$scratch/err" || fail "runner exited $?: $(cat "$scratch/err")"
expected="filter=-*DeathTest.* rank= pmix= slurm= opal=/opt/ompi btl=^openib pmixdir=/opt/pmix
filter=NcclWorldSizeOneDeathTest.ATimedOutCollectiveAbortsNamingRankAndCollective rank= pmix= slurm= opal=/opt/ompi btl=^openib pmixdir=/opt/pmix
filter=NcclWorldSizeOneDeathTest.SecondDeath rank= pmix= slurm= opal=/opt/ompi btl=^openib pmixdir=/opt/pmix"
[[ $(cat "$calls") == "$expected" ]] || fail "calls:
$(cat "$calls")
wanted:
$expected"
echo "ok: the death tests run apart, one each, without the job's environment" >&2

rm -f "$calls"
start=$SECONDS code=0
env HANG_DEATH=1 SDTRAIN_NCCL_DEATH_TIMEOUT_S=2 bash "$runner" "$scratch/build" "$scratch/logs" 2>/dev/null || code=$?
[[ $code -eq 124 ]] || fail "a hanging death test: exit $code, wanted 124 (timeout)"
(( SECONDS - start < 30 )) || fail "a hanging death test took $((SECONDS - start)) s despite its 2 s timeout"
[[ $(grep -c "^filter=NcclWorldSizeOneDeathTest" "$calls") -eq 2 ]] || fail "after a hang the other death test did not run"
echo "ok: a hanging death test ends by its own timeout and the rest still run" >&2

rm -rf "$scratch/build/bin/nccl_gpu_tests"
code=0
bash "$runner" "$scratch/build" 2>"$scratch/err" || code=$?
[[ $code -eq 1 && $(cat "$scratch/err") == *"nccl_gpu_tests first"* ]] || fail "a missing binary: exit $code, $(cat "$scratch/err")"
echo "ok: a missing binary is named" >&2
