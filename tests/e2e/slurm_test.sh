#!/usr/bin/env bash
# A real Slurm cluster on localhost: munged, slurmctld and slurmd started here in a scratch folder
# (their own ports and config, nothing system-wide), then launch/slurm/sdtrain.sbatch on 2 tasks:
#   start → pre-emption signal (scancel --signal=USR1 --batch, what --signal=B:USR1@120 sends) →
#   the script forwards it, sdtrain checkpoints and exits 75 → the script requeues the job →
#   the second start resumes with --resume auto and completes.
# Skips (exit 77) when Slurm or munge is not installed (launch/setup.sh does not install them:
# apt-get install slurmctld slurmd slurm-client munge) or when not root (slurmd needs root).
set -uo pipefail
build=$1
source_dir=$2
skip() { echo "SKIP: $*"; exit 77; }
[[ $(id -u) -eq 0 ]] || skip "slurmd needs root"
for tool in munged slurmctld slurmd sbatch srun scontrol squeue scancel; do
  command -v "$tool" >/dev/null || skip "$tool not installed (apt-get install slurmctld slurmd slurm-client munge)"
done

work=$build/test_scratch/Slurm.SbatchPreemptRequeueResume
rm -rf "$work"
mkdir -p "$work/state" "$work/spool" "$work/run"
chmod 755 "$work"
cleanup() {
  [[ -n ${job:-} ]] && scancel "$job" 2>/dev/null
  for daemon in slurmd slurmctld munged; do
    [[ -f $work/$daemon.pid ]] && kill "$(cat "$work/$daemon.pid")" 2>/dev/null
  done
}
trap cleanup EXIT
fail() {
  echo "FAIL: $*" >&2
  for log in "$work"/*.log "$work"/run/job-*.out; do [[ -f $log ]] && { echo "--- $log"; tail -n 40 "$log"; }; done
  exit 1
}

host=$(hostname)
ctld_port=$((20000 + RANDOM % 20000))
dd if=/dev/urandom of="$work/munge.key" bs=1024 count=1 status=none
chmod 400 "$work/munge.key"
munged --key-file="$work/munge.key" --socket="$work/munge.sock" --pid-file="$work/munged.pid" \
  --log-file="$work/munged.log" --seed-file="$work/munge.seed" --force || fail "munged did not start"
cat >"$work/slurm.conf" <<CONF
ClusterName=sdtraintest
SlurmctldHost=$host(127.0.0.1)
SlurmUser=root
SlurmdUser=root
SlurmctldPort=$ctld_port
SlurmdPort=$((ctld_port + 1))
AuthType=auth/munge
AuthInfo=socket=$work/munge.sock
CredType=cred/munge
StateSaveLocation=$work/state
SlurmdSpoolDir=$work/spool
SlurmctldPidFile=$work/slurmctld.pid
SlurmdPidFile=$work/slurmd.pid
SlurmctldLogFile=$work/slurmctld.log
SlurmdLogFile=$work/slurmd.log
ProctrackType=proctrack/pgid
TaskPlugin=task/none
MpiDefault=none
ReturnToService=2
SchedulerType=sched/builtin
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
NodeName=$host NodeAddr=127.0.0.1 CPUs=$(getconf _NPROCESSORS_ONLN) State=UNKNOWN
PartitionName=test Nodes=ALL Default=YES MaxTime=INFINITE State=UP OverSubscribe=YES
CONF
export SLURM_CONF=$work/slurm.conf
slurmctld -f "$SLURM_CONF" -i || fail "slurmctld did not start"
slurmd -f "$SLURM_CONF" || fail "slurmd did not start"
for _ in $(seq 100); do sinfo -h -o %T 2>/dev/null | grep -q idle && break; sleep 0.2; done
sinfo -h -o %T | grep -q idle || fail "the node did not come up"
launcher=mpirun
srun --mpi=list 2>&1 | grep -qw pmix && launcher=srun
echo "cluster up on $host:$ctld_port; ranks launched with $launcher"

cat >"$work/run/cfg.pbtxt" <<CONF
plugin_libraries: "$build/lib/libsdtrain_test_plugins.so"
run { output_dir: "out" seed: 3 val_every_n_epochs: 0 max_steps: ${SDTRAIN_SLURM_TEST_STEPS:-1500} checkpoint_every_n_steps: 0 }
model { type: "test_tiny_denoiser" }
data { train { type: "test_colors" } batch_size: 2 num_workers: 1 transforms { resolution: 16 } }
optimizer { base_learning_rate: 0.01 }
lr_schedule { type: "constant" }
gradient_accumulation_steps: 1
CONF
cd "$work/run"
# The script's GPU directive is overridden for this CPU-only node.
job=$(sbatch --parsable --nodes=1 --ntasks-per-node=2 --gpus-per-node=0 --cpus-per-task=1 --time=10 \
  --output="$work/run/job-%j.out" \
  --export=ALL,OMP_NUM_THREADS=1,SDTRAIN_LAUNCHER=$launcher,SDTRAIN_BIN=$build/bin/sdtrain \
  "$source_dir/launch/slurm/sdtrain.sbatch" "$work/run/cfg.pbtxt") || fail "sbatch refused the script"
echo "submitted job $job"
out=$work/run/job-$job.out

# Pre-empt once training runs on both ranks.
for _ in $(seq 600); do
  grep -q "data:" out/logs/rank-00001.log 2>/dev/null && break
  sleep 0.1
done
grep -q "data:" out/logs/rank-00001.log 2>/dev/null || fail "training did not start"
scancel --signal=USR1 --batch "$job" || fail "scancel --signal=USR1 failed"
# A requeued job waits ~2 minutes (Slurm's requeue delay); let it start now.
requeued=0
for _ in $(seq 600); do
  if grep -q "requeueing job $job" "$out" 2>/dev/null && squeue -h -j "$job" -o %T 2>/dev/null | grep -q PENDING; then
    scontrol update jobid="$job" StartTime=now && requeued=1 && break
  fi
  sleep 0.2
done
[[ $requeued -eq 1 ]] || fail "the job was not requeued after the stop signal"
for _ in $(seq 1200); do
  state=$(scontrol show job "$job" 2>/dev/null | grep -o 'JobState=[A-Z]*' | cut -d= -f2)
  [[ $state == COMPLETED || $state == FAILED || $state == CANCELLED ]] && break
  sleep 0.2
done
[[ $state == COMPLETED ]] || fail "job $job ended $state"

grep -q "forwarding SIGUSR1 to the ranks" "$out" || fail "the script did not forward the signal"
grep -q "stop signal received; stopping at step" "$out" || fail "sdtrain did not stop at a step boundary"
grep -q "(restart 1)" "$out" || fail "no second start"
grep -q "resumed from $work/run/out/checkpoints/step-" "$out" || fail "the second start did not resume"
steps=${SDTRAIN_SLURM_TEST_STEPS:-1500}
final=$(printf 'out/checkpoints/step-%08d/manifest.json' "$steps")
[[ -f $final ]] || fail "no final checkpoint $final"
echo "ok: pre-empted, checkpointed, requeued, resumed and finished ($(grep -o 'stopping at step [0-9]*' "$out"))"
