"""Table 3's measurement: the wall time of trained networks' eval forward pass over the eval set.

The forward pass timed is the project's one inference path, `inference.Network.probabilities`
(dequantize, the network's frame selection, the model; jitted), over eval batches read once and held on
the device: compile time and input reading are excluded. Networks are timed together, interleaved, so
that a change in machine load hits all of them alike.
"""
import statistics
import time
from typing import Any, Dict, List, Mapping, Sequence

import jax
import numpy as np

from fewframes_jax import specs
from fewframes_jax.evaluation import evaluate
from fewframes_jax import inference


def load_eval_batches(data: specs.DataSpec, max_videos: int = 0) -> List[Dict[str, np.ndarray]]:
  """The eval set of a run's data as host numpy batches (frames u8[B, T, D], num_frames
  i32[B], valid bool[B]; the last batch padded), up to `max_videos` (whole batches; 0: all). Read by
  the evaluation's own pipeline (`evaluate.eval_batches`: the config's schema and error policy)."""
  batches, seen = [], 0
  for batch in evaluate.eval_batches(data):
    batches.append({"frames": batch["frames"], "num_frames": batch["num_frames"].astype(np.int32),
                    "valid": batch["valid"]})
    seen += int(batch["valid"].sum())
    if max_videos and seen >= max_videos:
      break
  return batches


class TimedForward:
  """One network's eval forward pass over batches placed on the device once; `one_pass()` returns its
  wall time in seconds."""

  def __init__(self, network: inference.Network, batches: Sequence[Mapping[str, np.ndarray]]):
    self.network = network
    self._batches = [(jax.device_put(b["frames"]), jax.device_put(b["num_frames"])) for b in batches]
    self.videos = int(sum(b["valid"].sum() for b in batches))

  def one_pass(self) -> float:
    start = time.perf_counter()
    out = None
    for index, (frames, num_frames) in enumerate(self._batches):
      out = self.network.probabilities(frames, num_frames, batch_index=index)
    jax.block_until_ready(out)
    return time.perf_counter() - start


def time_eval(networks: Mapping[str, inference.Network], batches: Sequence[Mapping[str, np.ndarray]], *,
              repeats: int) -> Dict[str, Dict[str, Any]]:
  """Times each network's eval forward pass over `batches`.

  Each network runs one untimed warm-up pass (compile), then `repeats` rounds time every network once
  per round, interleaved; a network's time is its median. Returns key -> {seconds, videos, frames}
  (frames: the frame slots the model reads, k or the padded length T).
  """
  timed = {key: TimedForward(network, batches) for key, network in networks.items()}
  for t in timed.values():
    t.one_pass()
  samples: Dict[str, List[float]] = {key: [] for key in timed}
  for _ in range(max(1, repeats)):
    for key, t in timed.items():
      samples[key].append(t.one_pass())
  return {key: {"seconds": round(statistics.median(samples[key]), 4), "videos": t.videos,
                "frames": t.network.frames_seen}
          for key, t in timed.items()}
