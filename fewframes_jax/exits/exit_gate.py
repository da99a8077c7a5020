"""The learned exit gate: after exit e, predict from the predictions so far whether reading more frames
would still change the video's top-20 (FrameExit's gate with its pseudo-labels adapted to multi-label).

Features (`features`, f32[B, F], F = min(20, C) + 2 + E):
  the top-20 probabilities at exit e, sorted; the overlap of the top-20 class sets of exits e and e - 1;
  the largest change of a top-20 class's probability since exit e - 1 (both 0 at the first exit);
  a one-hot of e.
Target (`settled_targets`, FrameExit's pseudo-label): how much of the LAST exit's top-20 the top-20 at
exit e already holds, each class weighted by 1 / (1 + its rank at the last exit), in [0, 1] (1: the
ranking that GAP reads is settled; the weights favour the high ranks, which dominate GAP).
Model: an MLP (F -> 32 -> 1, ReLU), fitted with a soft-label sigmoid cross-entropy by Adam on pairs
(video, exit e < E) of the TRAINING split's predictions by the frozen any-k student; its score is the
sigmoid. Its FLOPs (about 2 * 32 * (F + 1) per exit) are counted with the exits' (`exit_curve.py`).
Saved as JSON next to the run (`GATE_FILE`), loaded by `load`.
"""
import dataclasses
import json
import os
from typing import Any, Dict, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax

from fewframes_jax.exits.early_exit import TOP_K, top_k_overlap

GATE_FILE = "exit_gate.json"
HIDDEN = 32


def features(probs: jax.Array, previous: Optional[jax.Array], e: int, num_exits: int) -> jax.Array:
  """f32[B, F] gate features after exit e (see the module docstring). probs, previous: f32[B, C]."""
  k = min(TOP_K, probs.shape[-1])
  scores, ids = jax.lax.top_k(probs, k)
  b = probs.shape[0]
  if previous is None:
    overlap = jnp.zeros([b], jnp.float32)
    change = jnp.zeros([b], jnp.float32)
  else:
    overlap = top_k_overlap(ids, jax.lax.top_k(previous, k)[1])
    change = jnp.max(jnp.abs(scores - jnp.take_along_axis(previous, ids, axis=1)), axis=1)
  one_hot = jnp.broadcast_to(jax.nn.one_hot(e, num_exits), (b, num_exits))
  return jnp.concatenate([scores, overlap[:, None], change[:, None], one_hot], axis=1).astype(jnp.float32)


def settled_targets(probs: jax.Array, last: jax.Array) -> jax.Array:
  """f32[B]: the rank-weighted share of the last exit's top-20 inside exit e's top-20."""
  k = min(TOP_K, probs.shape[-1])
  ids = jax.lax.top_k(probs, k)[1]
  last_ids = jax.lax.top_k(last, k)[1]
  weights = 1.0 / (1.0 + jnp.arange(k, dtype=jnp.float32))
  found = jnp.any(last_ids[:, :, None] == ids[:, None, :], axis=-1).astype(jnp.float32)
  return jnp.sum(found * weights, axis=1) / jnp.sum(weights)


@dataclasses.dataclass
class Gate:
  """A fitted gate: `params` {'w1' [F, H], 'b1' [H], 'w2' [H, 1], 'b2' [1]}."""
  params: Dict[str, Any]
  exits: Sequence[int]

  def logits(self, x: jax.Array) -> jax.Array:
    p = self.params
    h = jax.nn.relu(x @ jnp.asarray(p["w1"]) + jnp.asarray(p["b1"]))
    return (h @ jnp.asarray(p["w2"]) + jnp.asarray(p["b2"]))[:, 0]

  def score(self, x: jax.Array) -> jax.Array:
    """f32[B] in [0, 1]: the predicted settled share; exit when >= the threshold."""
    return jax.nn.sigmoid(self.logits(x))

  def score_exit(self, probs: jax.Array, previous: Optional[jax.Array], e: int, num_exits: int) -> jax.Array:
    """f32[B]: `score` of the gate features after exit e (probs, previous: f32[B, C])."""
    return self.score(features(probs, previous, e, num_exits))

  def save(self, workdir: str) -> str:
    path = os.path.join(workdir, GATE_FILE)
    with open(path, "w") as f:
      json.dump({"exits": list(self.exits), "hidden": HIDDEN,
                 "params": {k: np.asarray(v).tolist() for k, v in self.params.items()}}, f)
    return path


def load(workdir: str) -> Gate:
  """The gate saved in `workdir` (`exit_curve` fits and saves it). Raises FileNotFoundError with the path."""
  path = os.path.join(workdir, GATE_FILE)
  if not os.path.exists(path):
    raise FileNotFoundError(f"{path}: no exit gate saved with this run (fit one: python -m "
                            f"fewframes_jax.exits --workdir={workdir})")
  with open(path) as f:
    saved = json.load(f)
  return Gate(params={k: np.asarray(v, np.float32) for k, v in saved["params"].items()}, exits=saved["exits"])


def fit(x: np.ndarray, y: np.ndarray, exits: Sequence[int], *, steps: int = 1000, learning_rate: float = 1e-2,
        seed: int = 0) -> Gate:
  """Fits the gate on features x f32[M, F] and targets y f32[M] in [0, 1] (full-batch Adam)."""
  x, y = jnp.asarray(x, jnp.float32), jnp.asarray(y, jnp.float32)
  k1, k2 = jax.random.split(jax.random.PRNGKey(seed))
  f = x.shape[1]
  params = {"w1": jax.random.normal(k1, (f, HIDDEN)) * np.sqrt(2.0 / f), "b1": jnp.zeros([HIDDEN]),
            "w2": jax.random.normal(k2, (HIDDEN, 1)) * np.sqrt(1.0 / HIDDEN), "b2": jnp.zeros([1])}
  tx = optax.adam(learning_rate)

  def loss(params):
    logits = Gate(params, exits).logits(x)
    return jnp.mean(optax.sigmoid_binary_cross_entropy(logits, y))

  @jax.jit
  def update(params, opt_state):
    value, grads = jax.value_and_grad(loss)(params)
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, value

  opt_state = tx.init(params)
  for _ in range(steps):
    params, opt_state, _ = update(params, opt_state)
  return Gate({k: np.asarray(v) for k, v in params.items()}, tuple(exits))


__all__ = ["GATE_FILE", "Gate", "features", "fit", "load", "settled_targets"]
