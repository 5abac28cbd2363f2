#!/usr/bin/env bash
# launch/slurm/sdtrain.sbatch and launch/mpirun_examples.sh --dry-run: the srun and mpirun lines
# they would run, without Slurm or a cluster.
set -euo pipefail
script=$1/launch/slurm/sdtrain.sbatch
fail() { echo "FAIL: $*" >&2; exit 1; }
expect() {  # expect NAME ACTUAL WANTED
  [[ $2 == "$3" ]] || fail "$1: got '$2', wanted '$3'"
  echo "ok: $1"
}
clean_env=(env -u SLURM_NTASKS -u SLURM_NTASKS_PER_NODE -u SDTRAIN_LAUNCHER -u SDTRAIN_BIN -u SDTRAIN_SRUN_MPI
           -u SLURM_SUBMIT_DIR -u OMP_NUM_THREADS -u SDTRAIN_FAULTS)
for name in $(compgen -e | grep '^NCCL_' || true); do clean_env+=(-u "$name"); done

expect "srun line" \
  "$("${clean_env[@]}" SDTRAIN_LAUNCHER=srun SDTRAIN_BIN=/opt/sd/bin/sdtrain bash "$script" --dry-run cfg.pbtxt --set run.max_steps=9)" \
  "srun --mpi=pmix --kill-on-bad-exit=1 /opt/sd/bin/sdtrain --config cfg.pbtxt --resume auto --set run.max_steps=9 "
expect "srun --mpi override" \
  "$("${clean_env[@]}" SDTRAIN_LAUNCHER=srun SDTRAIN_SRUN_MPI=pmi2 SDTRAIN_BIN=sdtrain bash "$script" --dry-run c.pbtxt)" \
  "srun --mpi=pmi2 --kill-on-bad-exit=1 sdtrain --config c.pbtxt --resume auto "
expect "mpirun fallback with NCCL settings" \
  "$("${clean_env[@]}" SDTRAIN_LAUNCHER=mpirun SLURM_NTASKS=16 SLURM_NTASKS_PER_NODE=8 NCCL_SOCKET_IFNAME=eth0 \
     NCCL_DEBUG=WARN SDTRAIN_BIN=sdtrain bash "$script" --dry-run c.pbtxt)" \
  "mpirun -np 16 --bind-to none --map-by ppr:8:node -x NCCL_DEBUG -x NCCL_SOCKET_IFNAME sdtrain --config c.pbtxt --resume auto "
expect "uneven tasks per node leave the mapping to mpirun" \
  "$("${clean_env[@]}" SDTRAIN_LAUNCHER=mpirun SLURM_NTASKS=3 SLURM_NTASKS_PER_NODE='2,1' SDTRAIN_BIN=sdtrain \
     bash "$script" --dry-run c.pbtxt)" \
  "mpirun -np 3 --bind-to none sdtrain --config c.pbtxt --resume auto "
expect "binary from the submit directory" \
  "$("${clean_env[@]}" PATH=/usr/bin:/bin SDTRAIN_LAUNCHER=srun SLURM_SUBMIT_DIR=/home/u/sd bash "$script" --dry-run c.pbtxt)" \
  "srun --mpi=pmix --kill-on-bad-exit=1 /home/u/sd/build/bin/sdtrain --config c.pbtxt --resume auto "

# launch/mpirun_examples.sh
examples=$1/launch/mpirun_examples.sh
root=""
[[ $(id -u) -eq 0 ]] && root="--allow-run-as-root "
hosts=$(mktemp)
printf 'node1 slots=8\n# spare: node3\nnode2 slots=8\n\n' >"$hosts"
expect "mpirun multi-node" \
  "$("${clean_env[@]}" NCCL_IB_HCA=mlx5 SDTRAIN_BIN=sdtrain bash "$examples" --dry-run multi-node "$hosts" 8 c.pbtxt --set x=1)" \
  "mpirun --bind-to none ${root}--hostfile $hosts -np 16 --map-by ppr:8:node -x NCCL_IB_HCA sdtrain --config c.pbtxt --resume auto --set x=1 "
rm -f "$hosts"
expect "mpirun cpu" \
  "$("${clean_env[@]}" SDTRAIN_BIN=sdtrain bash "$examples" --dry-run cpu 2 c.pbtxt)" \
  "mpirun --bind-to none ${root}-np 2 --oversubscribe -x OMP_NUM_THREADS=1 sdtrain --config c.pbtxt --resume auto "

set +e
"${clean_env[@]}" bash "$script" >/dev/null 2>&1; code=$?
set -e
expect "no config is a usage error" "$code" 2
# The directives a pre-emptible GPU job needs.
for directive in "--signal=B:USR1@120" "--requeue" "--ntasks-per-node=" "--gpus-per-node=" "--open-mode=append"; do
  grep -q "^#SBATCH $directive" "$script" || fail "missing #SBATCH $directive"
done
echo "ok: #SBATCH directives"
