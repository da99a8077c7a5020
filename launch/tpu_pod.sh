#!/usr/bin/env bash
# Cloud TPU pod slice (TPU VMs): runs the same command on every host.
#
#   TPU_NAME=my-v4-32 ZONE=us-central2-b launch/tpu_pod.sh setup
#   TPU_NAME=my-v4-32 ZONE=us-central2-b launch/tpu_pod.sh train configs/nextvlad_k30.py gs://bucket/runs/k30 \
#     --config.data.train_pattern='gs://bucket/yt8m/frame/train*.tfrecord' \
#     --config.data.eval_pattern='gs://bucket/yt8m/frame/validate*.tfrecord' \
#     --config.data.num_classes=3862 --config.data.num_train_examples=3888919
#
# setup: copies this repository to every host and installs it with JAX for TPU.
# train: starts one process per host; JAX finds the other hosts itself (FEWFRAMES_DISTRIBUTED=1 ->
#        jax.distributed.initialize()). The workdir must be visible to every host (a gs:// bucket).
# Rerunning the same train command after a preemption resumes from the last complete checkpoint.
set -euo pipefail

: "${TPU_NAME:?set TPU_NAME}"
: "${ZONE:?set ZONE}"
PROJECT="${PROJECT:-$(gcloud config get-value project 2>/dev/null)}"
REMOTE_DIR="${REMOTE_DIR:-fewframes_jax}"
REPO_ROOT="$(cd "$(dirname "$0")/.." && pwd)"

on_all_hosts() {
  gcloud compute tpus tpu-vm ssh "$TPU_NAME" --zone="$ZONE" --project="$PROJECT" --worker=all --command="$1"
}

quote_args() {
  local out="" arg
  for arg in "$@"; do out+=" $(printf '%q' "$arg")"; done
  echo "$out"
}

case "${1:-}" in
  setup)
    tar -C "$REPO_ROOT" --exclude=.git --exclude=runs -czf /tmp/fewframes_jax.tgz .
    gcloud compute tpus tpu-vm scp /tmp/fewframes_jax.tgz "$TPU_NAME":/tmp/ --zone="$ZONE" \
      --project="$PROJECT" --worker=all
    on_all_hosts "mkdir -p $REMOTE_DIR && tar -C $REMOTE_DIR -xzf /tmp/fewframes_jax.tgz && \
      cd $REMOTE_DIR && pip install -U 'jax[tpu]' && pip install -e ."
    ;;
  train)
    shift
    if [[ $# -lt 2 ]]; then
      echo "usage: $0 train CONFIG WORKDIR [--config.x=y ...]" >&2
      exit 2
    fi
    CONFIG="$1"
    WORKDIR="$2"
    shift 2
    on_all_hosts "cd $REMOTE_DIR && FEWFRAMES_DISTRIBUTED=1 python3 -m fewframes_jax.main \
      --config=$(printf '%q' "$CONFIG") --workdir=$(printf '%q' "$WORKDIR")$(quote_args "$@")"
    ;;
  *)
    echo "usage: $0 setup | train CONFIG WORKDIR [--config.x=y ...]" >&2
    exit 2
    ;;
esac
