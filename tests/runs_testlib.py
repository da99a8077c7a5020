"""Shared by the scale-out tests: tiny TFRecord data, a tiny config, and a training worker process.

The worker (`python tests/runs_testlib.py '<json>'`) runs `train_loop.train_and_evaluate` on the tiny
config, optionally with a fault injected, and writes what it ended with:
  <result>.<process>.json  {'step', 'eval', 'skipped_records', 'process_index', 'process_count'}
  <result>.<process>.npz   this process's copy of the final state (flattened paths -> arrays)
Faults (`fault`): 'kill_in_save=S' (SIGKILL inside step S's save, after its files are written, before
Orbax's atomic rename), 'nan_at=S' (the batch of step S gets a NaN frame value), 'sigterm_at=S' (SIGTERM
to itself once step S has run, and again each time the loop then waits for its checkpoint to be written).
Multi-host: the FEWFRAMES_COORDINATOR / _NUM_PROCESSES / _PROCESS_ID environment (parallel.py).
"""
import json
import os
import signal
import socket
import subprocess
import sys
import time
from typing import Dict, List, Sequence

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NUM_CLASSES = 8
MAX_FRAMES = 20
FEATURE_SIZES = (16, 8)
WORKER_TIMEOUT_S = 480


def write_dataset(root: str, *, num_train: int = 48, train_shards: int = 4, num_eval: int = 20,
                  eval_shards: int = 3, seed: int = 0, bad_train_shards: Sequence[int] = (),
                  bad_eval_shards: Sequence[int] = ()) -> Dict[str, str]:
  """Tiny frame-level TFRecords (ids 'train<shard>_<i>', 'eval<shard>_<i>'); returns the globs.

  Eval shards get uneven sizes (7, 7, 6 for 20 videos) so per-process eval shards differ. The first
  record of each train shard in `bad_train_shards` (eval shard in `bad_eval_shards`) has a label outside
  [0, NUM_CLASSES) (a bad record).
  """
  from fewframes_jax.data import records  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(seed)
  os.makedirs(root, exist_ok=True)
  for split, n, shards in (("train", num_train, train_shards), ("eval", num_eval, eval_shards)):
    for s in range(shards):
      recs = []
      for i in range(n // shards + (s < n % shards)):
        length = int(rng.integers(1, MAX_FRAMES + 5))
        labels = sorted(set(rng.integers(0, NUM_CLASSES, rng.integers(1, 3)).tolist()))
        features = {name: rng.integers(0, 256, (length, size), dtype=np.uint8)
                    for name, size in zip(("rgb", "audio"), FEATURE_SIZES)}
        for label in labels:  # a learnable signal
          features["rgb"][:, 2 * label:2 * label + 2] = 250
        if i == 0 and s in (bad_train_shards if split == "train" else bad_eval_shards):
          labels = [NUM_CLASSES]
        recs.append(records.encode_sequence_example(video_id=f"{split}{s}_{i}".encode(), labels=labels,
                                                    features=features))
      records.write_tfrecord(os.path.join(root, f"{split}-{s}.tfrecord"), recs)
  return {"train": os.path.join(root, "train-*"), "eval": os.path.join(root, "eval-*")}


def write_videos(root: str, lengths: Sequence[int], *, feature_sizes: Sequence[int], num_classes: int,
                 split: int, seed: int = 0) -> str:
  """Videos of random rgb and audio bytes of the given lengths (ids 'v<i>', label i % num_classes), the
  first `split` in a.tfrecord and the rest in b.tfrecord under `root`; returns their glob."""
  from fewframes_jax.data import records  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(seed)
  videos = [records.encode_sequence_example(
      video_id=f"v{i}".encode(), labels=[i % num_classes],
      features={name: rng.integers(0, 256, (n, size), dtype=np.uint8)
                for name, size in zip(("rgb", "audio"), feature_sizes)})
            for i, n in enumerate(lengths)]
  records.write_tfrecord(os.path.join(root, "a.tfrecord"), videos[:split])
  records.write_tfrecord(os.path.join(root, "b.tfrecord"), videos[split:])
  return os.path.join(root, "*.tfrecord")


def tiny_config(data: Dict[str, str], *, steps: int = 6, **overrides):
  """A parallel-mode NeXtVLAD config, k=4 of T=20 frames, batch 8, checkpoints every 2 steps."""
  from configs import base  # pylint: disable=g-import-not-at-top
  c = base.experiment("nextvlad", k=4, arg="tiny")
  c.data.train_pattern, c.data.eval_pattern = data["train"], data["eval"]
  c.data.num_classes = NUM_CLASSES
  c.data.max_frames = MAX_FRAMES
  c.data.feature_sizes = FEATURE_SIZES
  c.data.batch_size = 8
  c.data.eval_batch_size = 8
  c.data.shuffle_buffer = 16
  c.optim.learning_rate = 0.01
  c.train.num_steps = steps
  c.train.checkpoint_every = 2
  c.train.log_every = 2
  c.train.progress_bar = False
  for key, value in overrides.items():
    set_field(c, key, value)
  return c


def random_batch(seed: int, lengths, *, max_frames: int, feature_dim: int, num_classes: int):
  """A train batch of uint8 frames (zero after each length) with one random label per video:
  {'frames' u8[B, T, D], 'num_frames' i32[B], 'labels' u8[B, C], 'valid' bool[B]}."""
  rng = np.random.default_rng(seed)
  n = np.asarray(lengths, np.int32)
  frames = rng.integers(0, 256, size=(len(n), max_frames, feature_dim), dtype=np.uint8)
  frames[np.arange(max_frames)[None, :] >= n[:, None]] = 0
  labels = np.zeros((len(n), num_classes), np.uint8)
  labels[np.arange(len(n)), rng.integers(0, num_classes, len(n))] = 1
  return {"frames": frames, "num_frames": n, "labels": labels, "valid": np.ones(len(n), bool)}


def set_field(config, dotted: str, value) -> None:
  """config['a']['b']['c'] = value for dotted = 'a.b.c'."""
  node = config
  *parents, leaf = dotted.split(".")
  for p in parents:
    node = node[p]
  node[leaf] = value


def free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def flatten(tree) -> Dict[str, np.ndarray]:
  """A pytree of arrays -> {'a/b/c': numpy array} (None leaves dropped)."""
  import jax  # pylint: disable=g-import-not-at-top
  out = {}
  for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
    out["/".join(str(getattr(k, "key", getattr(k, "name", getattr(k, "idx", k)))) for k in path)] = \
        np.asarray(leaf)
  return out


def worker_env(**extra) -> Dict[str, str]:
  """Environment of a worker: CPU, quiet TF, fast compiles; the session's persistent compile cache
  (tests/conftest.py) is inherited."""
  env = dict(os.environ, JAX_PLATFORMS="cpu", TF_CPP_MIN_LOG_LEVEL="3", CUDA_VISIBLE_DEVICES="",
             JAX_DISABLE_MOST_OPTIMIZATIONS="1", PYTHONPATH=ROOT)
  for key in ("FEWFRAMES_COORDINATOR", "FEWFRAMES_NUM_PROCESSES", "FEWFRAMES_PROCESS_ID"):
    env.pop(key, None)
  env.update({k: str(v) for k, v in extra.items()})
  # The session's compile-time flags (tests/conftest.py), then the worker's own (a device count).
  env["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {extra.get('XLA_FLAGS', '')}".strip()
  return env


def start_worker(spec: dict, env: Dict[str, str], log_path: str) -> subprocess.Popen:
  """Starts one worker process (stdout+stderr to `log_path`)."""
  with open(log_path, "w") as log:  # the child keeps its own copy of the descriptor
    return subprocess.Popen([sys.executable, os.path.abspath(__file__), json.dumps(spec)], cwd=ROOT, env=env,
                            stdout=log, stderr=subprocess.STDOUT)


def _kill(procs: Sequence[subprocess.Popen]) -> None:
  for p in procs:
    if p.poll() is None:
      p.kill()
      p.wait()


def wait_all(procs: Sequence[subprocess.Popen], logs: Sequence[str], timeout: float = WORKER_TIMEOUT_S, *,
             fail_fast: bool = False) -> List[int]:
  """Waits for every process; returns their exit codes.

  Past `timeout` every process is killed and the test fails with the logs. `fail_fast` (processes of one
  multi-process job): once one exits with an error, the others (which would wait on it) are killed.
  """
  deadline = time.monotonic() + timeout
  while any(p.poll() is None for p in procs):
    failed = fail_fast and any(p.poll() not in (None, 0) for p in procs)
    if failed or time.monotonic() > deadline:
      _kill(procs)
      why = "a process of the job failed" if failed else f"timed out after {timeout} s"
      raise AssertionError(f"workers: {why}; logs:\n" + "\n".join(tail(log) for log in logs))
    time.sleep(0.2)
  return [p.returncode for p in procs]


def tail(path: str, chars: int = 4000) -> str:
  with open(path) as f:
    return f"--- {path} ---\n" + f.read()[-chars:]


def run_worker(spec: dict, env: Dict[str, str], log_path: str, timeout: float = WORKER_TIMEOUT_S) -> int:
  return wait_all([start_worker(spec, env, log_path)], [log_path], timeout)[0]


def load_result(prefix: str, process: int = 0):
  with open(f"{prefix}.{process}.json") as f:
    summary = json.load(f)
  return summary, dict(np.load(f"{prefix}.{process}.npz"))


# ------------------------------------------------------------------------------------------------
# The worker.


def _inject_fault(fault: str) -> None:
  from fewframes_jax.train import loop  # pylint: disable=g-import-not-at-top
  kind, _, value = fault.partition("=")
  target = int(value)

  def die():
    sys.stdout.flush()
    os.kill(os.getpid(), signal.SIGKILL)

  if kind == "sigterm_at":  # the job is told to stop (SLURM, preemptible VMs) while step S trains
    from fewframes_jax.train import trainer as train_lib  # pylint: disable=g-import-not-at-top
    jit_train_step = train_lib.jit_train_step

    def jit_then_signal(setup):
      step_fn = jit_train_step(setup)

      def step_and_signal(state, batch):
        out = step_fn(state, batch)
        if int(out[0].step) == target:
          print(f"FAULT: SIGTERM during step {target}", flush=True)
          os.kill(os.getpid(), signal.SIGTERM)
          signalled.append(target)
        return out

      return step_and_signal

    from fewframes_jax import checkpoint  # pylint: disable=g-import-not-at-top
    make_manager, signalled = checkpoint.make_manager, []

    def manager_signalled_again(*args, **kwargs):  # a second SIGTERM while the save is being written
      manager = make_manager(*args, **kwargs)
      wait = manager.wait_until_finished

      def signal_then_wait():
        if signalled:
          print(f"FAULT: SIGTERM again while waiting for the save of step {target}", flush=True)
          os.kill(os.getpid(), signal.SIGTERM)
        return wait()

      manager.wait_until_finished = signal_then_wait
      return manager

    train_lib.jit_train_step = jit_then_signal
    checkpoint.make_manager = manager_signalled_again
    return
  if kind == "kill_in_save":
    from orbax.checkpoint._src.path import atomicity  # pylint: disable=g-import-not-at-top
    cls = atomicity.AtomicRenameTemporaryPath
    finalize = cls.finalize

    async def finalize_or_die(self):
      if self.get_final().name == str(target):
        print(f"FAULT: SIGKILL inside the save of step {target} (files in {self.get().name})", flush=True)
        die()
      return await finalize(self)

    cls.finalize = finalize_or_die
  elif kind == "nan_at":
    batches = loop._train_batches  # pylint: disable=protected-access

    def with_nan(config, start, counter=None):  # the target-th batch of this (fresh) run
      for step, batch in enumerate(batches(config, start, counter), start=1):
        if step == target:
          batch = dict(batch, frames=batch["frames"].astype(np.float32))
          batch["frames"][0, 0, 0] = np.nan
        yield batch

    loop._train_batches = with_nan  # pylint: disable=protected-access
  else:
    raise ValueError(f"unknown fault {fault!r}")


def worker_main(spec: dict) -> None:
  from fewframes_jax import parallel  # pylint: disable=g-import-not-at-top
  parallel.maybe_initialize_distributed()
  import jax  # pylint: disable=g-import-not-at-top
  from fewframes_jax.train import loop  # pylint: disable=g-import-not-at-top
  if spec.get("fault"):
    _inject_fault(spec["fault"])
  config = tiny_config(spec["data"], steps=spec.get("steps", 6), **spec.get("overrides", {}))
  out = loop.train_and_evaluate(config, spec["workdir"])
  if spec.get("result"):
    prefix = f"{spec['result']}.{jax.process_index()}"
    from fewframes_jax import checkpoint as ckpt_lib  # pylint: disable=g-import-not-at-top
    np.savez(prefix + ".npz", **flatten(parallel.local_copy(ckpt_lib.state_to_tree(out["state"]))))
    with open(prefix + ".json", "w") as f:
      json.dump({"step": out["step"], "eval": out["eval"], "skipped_records": out["skipped_records"],
                 "process_index": jax.process_index(), "process_count": jax.process_count()}, f, default=float)


if __name__ == "__main__":
  worker_main(json.loads(sys.argv[1]))
