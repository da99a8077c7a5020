"""Measured videos per second of each network's eval forward, on this machine, after training.

`eval_forward_speed` times the jitted `inference.Forward.apply` of every network of a run (the forward
that evaluation and a restored `Network` run: dequantize, pick the network's frames, apply the model) on
the run's first eval batches, already on the device. Each network is compiled and run once before the
clock starts (compile excluded); then the networks take turns, round after round, so a change in the
machine's load reaches every network alike. In a round a network passes over the batches as often as it
takes to run for `min_seconds` (a fast student makes many passes, so a short stall does not decide its
figure), and each network's median round counts. The summary reports the result next to the FLOPs
(`summary.py`); `benchmark/` holds the fuller measurements.
"""
import itertools
import statistics
import time
from typing import Any, Dict, Iterable, List, Mapping, Tuple

import jax

from fewframes_jax import inference
from fewframes_jax import parallel

DEFAULT_BATCHES = 2        # eval batches per pass
DEFAULT_ROUNDS = 3         # timed rounds per network; the median counts
DEFAULT_MIN_SECONDS = 1.0  # a round repeats its passes until it has run this long


def _timed_round(forward_fn, variables, batches: List[Dict[str, jax.Array]], min_seconds: float
                 ) -> Tuple[int, float]:
  """(videos, seconds) of whole passes over `batches`, repeated until `min_seconds` have passed."""
  videos, start = 0, time.perf_counter()
  while True:
    for index, batch in enumerate(batches):
      jax.block_until_ready(forward_fn(variables, batch["frames"], batch["num_frames"], inference.eval_key(index)))
      videos += int(batch["num_frames"].shape[0])
    elapsed = time.perf_counter() - start
    if elapsed >= min_seconds:
      return videos, elapsed


def eval_forward_speed(forwards: Mapping[str, inference.Forward], variables: Mapping[str, Any],
                       batches: Iterable[Mapping[str, Any]], *, mesh=None, num_batches: int = DEFAULT_BATCHES,
                       rounds: int = DEFAULT_ROUNDS, min_seconds: float = DEFAULT_MIN_SECONDS) -> Dict[str, float]:
  """Videos per second of each network's eval forward.

  Args:
    forwards: {'teacher'|'student': Forward}; variables: the same keys -> {'params', 'batch_stats'}
      (`trainer.eval_variables`), on the mesh.
    batches: host-local eval batches (frames u8[B, T, D], num_frames i32[B], ...); the first
      `num_batches` are timed (every row counts as a video: a padding row costs what a video does).
    rounds: timed rounds per network (>= 1), each of whole passes over the batches for at least
      `min_seconds`; the median round's videos/s is reported.

  Returns:
    {network: videos per second}; {} when there is no batch.
  """
  mesh = mesh or parallel.make_mesh()
  on_device = [parallel.to_global(b, mesh) for b in itertools.islice(batches, num_batches)]
  if not on_device:
    return {}
  functions = {}
  for which, forward in forwards.items():
    fn = jax.jit(lambda v, f, n, r, forward=forward: forward.apply(v, f, n, r).probabilities)
    jax.block_until_ready(fn(variables[which], on_device[0]["frames"], on_device[0]["num_frames"],
                             inference.eval_key(0)))  # compiled (and run once) before the clock starts
    functions[which] = fn
  speeds: Dict[str, List[float]] = {which: [] for which in functions}
  for _ in range(max(1, rounds)):
    for which, fn in functions.items():
      videos, seconds = _timed_round(fn, variables[which], on_device, min_seconds)
      speeds[which].append(videos / max(seconds, 1e-9))
  return {which: statistics.median(values) for which, values in speeds.items()}
