"""The ranking function every export serves: the network's eval forward, then its top classes.

  ranking_fn(forward)   uint8 frames [B, T', D], num_frames i32[B] -> (class_ids i32[B, K], scores f32[B, K]),
                        K = min(TOP_K, C), sorted by descending score;
  top_classes           the top K without `jax.lax.top_k` (see `export.py` on StableHLO versions);
  weight_list           a network's arrays as one flat, name-sorted list (an argument of the exported function).

Both artifacts are lowered for `PLATFORMS` (CPU and CUDA), so one export serves on either kind of host.
"""
from typing import Callable, Dict, Tuple

import jax
import jax.numpy as jnp
import numpy as np

from fewframes_jax import inference
from fewframes_jax import metrics

TOP_K = metrics.TOP_K
TOP_K_GROUP = 32  # classes per group in `top_classes`' first stage
PLATFORMS = ("cpu", "cuda")  # lowered for both: the artifacts serve on a CPU or an NVIDIA GPU host


def top_classes(probabilities: jax.Array, k: int = TOP_K) -> Tuple[jax.Array, jax.Array]:
  """Each video's k best classes: probabilities f32[B, C] -> (class_ids i32[B, k'], scores f32[B, k']),
  k' = min(k, C), by descending score; equal scores in ascending class id (`jax.lax.top_k`'s order, which
  `metrics` ranks by).

  Not `lax.top_k`, whose lowering TensorFlow 2.21 cannot load (module docstring), and not a sort of all C
  classes, which XLA's CPU backend runs with a comparator call per comparison (B=128, C=4716: 150-220 ms,
  more than a k=10 NeXtVLAD student's forward). Two stages of plain reductions instead (9 ms there;
  `lax.top_k` 3.6 ms): the classes in groups of `TOP_K_GROUP`, the k' groups with the largest maxima
  (every one of the k' best classes is in one of them: a class in another group has k' groups ahead of
  its own, each holding a class that ranks before it), then the k' best of those groups' classes, taken in
  class order so that ties stay in class order.
  """
  batch, num_classes = probabilities.shape
  k = min(k, num_classes)
  num_groups = -(-num_classes // TOP_K_GROUP)
  padded = jnp.pad(probabilities, ((0, 0), (0, num_groups * TOP_K_GROUP - num_classes)), constant_values=-jnp.inf)
  groups = padded.reshape(batch, num_groups, TOP_K_GROUP)
  chosen = jnp.sort(_top_by_max(groups.max(axis=-1), min(k, num_groups))[0], axis=-1)
  candidates = jnp.take_along_axis(groups, chosen[:, :, None], axis=1).reshape(batch, -1)
  candidate_ids = (chosen[:, :, None] * TOP_K_GROUP + jnp.arange(TOP_K_GROUP, dtype=jnp.int32)).reshape(batch, -1)
  positions, scores = _top_by_max(candidates, k)
  return jnp.take_along_axis(candidate_ids, positions, axis=-1), scores


def _top_by_max(x: jax.Array, k: int) -> Tuple[jax.Array, jax.Array]:
  """(indices i32[B, k], values [B, k]) of the k largest of x [B, n], equal values in ascending index:
  k rounds of (max, its first index, masked out). Plain max/min reductions: `argmax`, a reduction over
  (value, index) pairs, is not vectorised on a CPU."""
  n = x.shape[-1]
  iota = jax.lax.broadcasted_iota(jnp.int32, x.shape, 1)
  indices, values = [], []
  for _ in range(k):
    best = x.max(axis=-1)
    first = jnp.min(jnp.where(x == best[:, None], iota, n), axis=-1)
    indices.append(first)
    values.append(best)
    x = jnp.where(iota == first[:, None], -jnp.inf, x)
  return jnp.stack(indices, axis=-1), jnp.stack(values, axis=-1)


def ranking_fn(forward: inference.Forward, *, preselected: bool = False, top_k: int = TOP_K) -> Callable:
  """(variables, frames u8[B, T', D], num_frames i32[B]) -> (class_ids i32[B, K], scores f32[B, K]): the
  eval forward with the fixed key `eval_key(0)`, then `top_classes`. `preselected`: the frames are the
  network's own k (the student-only decode; T' = k, num_frames = num_frames_k)."""

  def fn(variables, frames_u8, num_frames):
    output = forward.apply(variables, frames_u8, num_frames, inference.eval_key(0), preselected=preselected)
    return top_classes(output.probabilities.astype(jnp.float32), top_k)

  return fn


def weight_list(variables) -> Tuple[Dict[str, np.ndarray], Callable]:
  """The weights as the `jax.export` artifact takes them: ({name: array} for `np.savez`, whose sorted
  names give the argument's order; `unflatten(list) -> variables`, which the exported function applies).
  A name is `<index>.<path>`, e.g. `0003.params.head.gates.kernel`. bfloat16 arrays (a bfloat16 run's
  `cast_for_inference`) are stored as their uint16 bits, since npz has no bfloat16: pass them as loaded,
  `unflatten` reinterprets the bits (no conversion)."""
  paths, treedef = jax.tree_util.tree_flatten_with_path(variables)
  named, bits16 = {}, []
  for i, (path, leaf) in enumerate(paths):
    leaf = np.asarray(leaf)
    bits16.append(leaf.dtype == jnp.bfloat16)
    name = ".".join(str(getattr(k, "key", getattr(k, "idx", k))) for k in path)
    named[f"{i:04d}.{name}"] = leaf.view(np.uint16) if bits16[-1] else leaf

  def unflatten(weights):
    return jax.tree.unflatten(treedef, [jax.lax.bitcast_convert_type(w, jnp.bfloat16) if b else w
                                        for w, b in zip(weights, bits16)])

  return named, unflatten
