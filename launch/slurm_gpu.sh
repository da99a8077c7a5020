#!/usr/bin/env bash
# Multi-node GPU training with SLURM: one process per node, each driving all of its node's GPUs.
#
#   sbatch --nodes=4 launch/slurm_gpu.sh configs/nextvlad_k30.py /shared/runs/nextvlad_k30 \
#     --config.data.train_pattern='/shared/yt8m/frame/train*.tfrecord' \
#     --config.data.eval_pattern='/shared/yt8m/frame/validate*.tfrecord' \
#     --config.data.num_classes=3862 --config.data.num_train_examples=3888919
#
# The workdir must be on a filesystem every node sees (Orbax writes one checkpoint from all processes).
# JAX reads the SLURM environment (FEWFRAMES_DISTRIBUTED=1 -> jax.distributed.initialize()); process p
# reads training files p, p+P, p+2P, ... so the job needs at least as many train and eval files as nodes.
# data.batch_size is the global batch: it must divide by the total number of GPUs.
# Preemption: the job is requeued and reruns the same command, which resumes from the last complete
# checkpoint exactly (see launch/README.md).
#SBATCH --job-name=fewframes
#SBATCH --nodes=2
#SBATCH --ntasks-per-node=1
#SBATCH --gpus-per-node=8
#SBATCH --cpus-per-task=32
#SBATCH --time=24:00:00
#SBATCH --requeue
#SBATCH --output=%x-%j.out
set -euo pipefail

if [[ $# -lt 2 ]]; then
  echo "usage: sbatch [--nodes=N] $0 CONFIG WORKDIR [--config.x=y ...]" >&2
  exit 2
fi
CONFIG="$1"
WORKDIR="$2"
shift 2
PYTHON="${PYTHON:-python}"

export FEWFRAMES_DISTRIBUTED=1
# The input pipeline (TensorFlow) must not take GPU memory; main.py hides the GPUs from it as well.
export TF_FORCE_GPU_ALLOW_GROWTH=true
export XLA_PYTHON_CLIENT_MEM_FRACTION="${XLA_PYTHON_CLIENT_MEM_FRACTION:-0.9}"

cd "${SLURM_SUBMIT_DIR:-.}"
srun --kill-on-bad-exit=1 "$PYTHON" -m fewframes_jax.main --config="$CONFIG" --workdir="$WORKDIR" "$@"
