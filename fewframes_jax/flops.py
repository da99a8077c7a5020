"""FLOPs of compiled functions from XLA's cost analysis, with loops counted in full.

XLA's `cost_analysis()` counts a while loop's body ONCE, whatever its trip count (jax 0.10, CPU: a
100-step `lax.scan` reports 1/100 of its FLOPs). Recurrent models (H-RNN, LSTM/GRU) are scans, so a
plain count under-reports them by about their number of steps.

`scan_aware_flops` fixes this without touching the model: it traces the function to a jaxpr and
re-evaluates it with every `scan` replaced by its fully unrolled body (nested scans and scans inside
`jit`/`custom_jvp`/`custom_vjp`/`checkpoint` calls included), then compiles that straight-line program and
reads XLA's count. It then checks the optimized HLO: if any `while` loop is left (a `lax.while_loop` or
`fori_loop` with traced bounds, or a scan under `cond`), it raises rather than return an under-count.
This is the same program a model built with `unroll=T` would compile to (the tests check that the two
counts agree), so no `unroll` config is needed for counting. Unrolling costs compile time: a 300-step
2-layer LSTM takes a while to compile; H-RNN's 15 + 20 steps are quick.

FLOPs here are XLA's: a multiply-add counts 2, and elementwise ops (adds, compares, exp, ...) count 1
per element (transcendentals are reported separately and not included).
"""
import functools
import math
from typing import Any, Callable, Dict, Iterable, Mapping, Sequence, Tuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.extend import core as jex_core

# Primitives whose sub-jaxpr is evaluated inline (a call with no semantics of its own for a forward count).
_CALL_JAXPR_PARAMS = {
    "pjit": "jaxpr", "jit": "jaxpr", "closed_call": "call_jaxpr", "core_call": "call_jaxpr",
    "custom_jvp_call": "call_jaxpr", "custom_vjp_call": "call_jaxpr",
    "custom_vjp_call_jaxpr": "fun_jaxpr", "checkpoint": "jaxpr", "remat": "jaxpr",
}


def _cost_dict(compiled) -> Mapping[str, float]:
  cost = compiled.cost_analysis()
  if isinstance(cost, (list, tuple)):  # older jax: one dict per HLO module; jit has one module
    if len(cost) != 1:
      raise ValueError(f"expected one cost-analysis entry, got {len(cost)}")
    cost = cost[0]
  if not cost or "flops" not in cost:
    raise ValueError(f"XLA cost analysis reported no 'flops' (got keys {sorted(cost or {})})")
  return cost


def _abstract(tree):
  return jax.tree.map(lambda x: jax.ShapeDtypeStruct(np.shape(x), jnp.result_type(x)), tree)


def compiled_flops(fn: Callable, *args, **kwargs) -> float:
  """XLA's FLOP count of `jax.jit(fn)(*args)`, as compiled for the default backend.

  `args` (arrays, pytrees or `jax.ShapeDtypeStruct`s) are traced; `kwargs` are closed over as static
  values. While-loop bodies are counted once: use `scan_aware_flops` for functions with scans.
  """
  compiled = jax.jit(functools.partial(fn, **kwargs)).lower(*_abstract(args)).compile()
  return float(_cost_dict(compiled)["flops"])


def while_loops(hlo_text: str) -> list:
  """Trip counts of the `while` instructions in optimized HLO text (None where XLA does not know it)."""
  counts = []
  for line in hlo_text.splitlines():
    if " while(" not in line:
      continue
    marker = '"known_trip_count":{"n":"'
    at = line.find(marker)
    counts.append(int(line[at + len(marker):line.index('"', at + len(marker))]) if at >= 0 else None)
  return counts


def _read(env, v):
  return v.val if isinstance(v, jex_core.Literal) else env[v]


def _eval_jaxpr(jaxpr, consts, args):
  """Evaluates an (open) jaxpr like `jax.core.eval_jaxpr`, unrolling every scan on the way."""
  env = {}
  for v, x in zip(jaxpr.constvars, consts):
    env[v] = x
  for v, x in zip(jaxpr.invars, args):
    env[v] = x
  for eqn in jaxpr.eqns:
    invals = [_read(env, v) for v in eqn.invars]
    name = eqn.primitive.name
    if name == "scan":
      outvals = _unrolled_scan(eqn, invals)
    elif name in _CALL_JAXPR_PARAMS and _CALL_JAXPR_PARAMS[name] in eqn.params:
      outvals = _eval_any_jaxpr(eqn.params[_CALL_JAXPR_PARAMS[name]], invals)
    else:
      params = eqn.primitive.get_bind_params(eqn.params)
      subfuns = ()
      if isinstance(params, tuple):  # older jax: (subfuns, params)
        subfuns, params = params
      outvals = eqn.primitive.bind(*subfuns, *invals, **params)
      if not eqn.primitive.multiple_results:
        outvals = [outvals]
    for v, x in zip(eqn.outvars, outvals):
      env[v] = x
  return [_read(env, v) for v in jaxpr.outvars]


def _eval_any_jaxpr(jaxpr, args):
  if isinstance(jaxpr, jex_core.ClosedJaxpr):
    return _eval_jaxpr(jaxpr.jaxpr, jaxpr.consts, args)
  return _eval_jaxpr(jaxpr, (), args)


def _unrolled_scan(eqn, invals):
  """`lax.scan` as a Python loop over its body: straight-line code, no XLA while loop."""
  p = eqn.params
  num_consts, num_carry, length = p["num_consts"], p["num_carry"], p["length"]
  consts = list(invals[:num_consts])
  carry = list(invals[num_consts:num_consts + num_carry])
  xs = invals[num_consts + num_carry:]
  ys_avals = [v.aval for v in eqn.outvars[num_carry:]]
  steps = range(length - 1, -1, -1) if p["reverse"] else range(length)
  ys_by_step = {}
  for i in steps:
    x_i = [lax.index_in_dim(x, i, keepdims=False) for x in xs]
    out = _eval_any_jaxpr(p["jaxpr"], consts + carry + x_i)
    carry, ys_by_step[i] = list(out[:num_carry]), out[num_carry:]
  if length == 0:
    ys = [jnp.zeros(a.shape, a.dtype) for a in ys_avals]
  else:
    ys = [jnp.stack([ys_by_step[i][j] for i in range(length)]) for j in range(len(ys_avals))]
  return carry + ys


def scan_aware_flops(fn: Callable, *args, allow_loops: bool = False, **kwargs) -> float:
  """XLA's FLOP count of `fn(*args)` with every `lax.scan` counted for all of its steps.

  Args:
    fn: the function; `args` are traced (arrays, pytrees or `jax.ShapeDtypeStruct`s), `kwargs` are
      closed over as static values.
    allow_loops: if False (default), raise when the compiled program still has a while loop (its
      body would be counted once); if True, return XLA's count anyway.

  Returns:
    FLOPs of the whole call (not per example).
  """
  closed = jax.make_jaxpr(functools.partial(fn, **kwargs))(*_abstract(args))
  flat_avals = [jax.ShapeDtypeStruct(v.aval.shape, v.aval.dtype, weak_type=v.aval.weak_type)
                for v in closed.jaxpr.invars]

  def unrolled(*flat_args):
    return _eval_jaxpr(closed.jaxpr, closed.consts, flat_args)

  compiled = jax.jit(unrolled).lower(*flat_avals).compile()
  loops = while_loops(compiled.as_text())
  if loops and not allow_loops:
    raise ValueError(
        f"{getattr(fn, '__name__', fn)} still compiles to {len(loops)} while loop(s) (trip counts {loops}) "
        "after unrolling every scan; XLA would count their bodies once. Use static loop bounds "
        "(lax.scan / fori_loop with Python ints) or pass allow_loops=True to accept the under-count. Loops of "
        "5 steps usually come from threefry random bits (e.g. dropout); a key made with "
        "jax.random.key(seed, impl='unsafe_rbg') generates them without a loop.")
  return float(_cost_dict(compiled)["flops"])


def forward_flops_per_video(model, variables, *, num_frames_T: int, feature_dim: int, batch_size: int = 1,
                            train: bool = False, dtype=jnp.float32, scan_aware: bool = True,
                            rng_names: Sequence[str] = ("dropout",)) -> float:
  """FLOPs per video of `model`'s forward pass to its logits on [B, T, D] frames.

  Inputs are abstract (`jax.ShapeDtypeStruct`: frames dtype[B, T, D], num_frames i32[B]); XLA's count
  depends only on shapes, and every video is taken to be T frames long. `variables` may also be
  abstract (e.g. from `jax.eval_shape(model.init, ...)`), so paper-size models need no memory.
  Outputs that do not feed the logits (e.g. `intermediates`) are dead code and not counted.

  Args:
    model: a flax module with `__call__(frames, num_frames, *, train) -> ModelOutput`.
    variables: its variables ({'params': ..., 'batch_stats': ...}).
    num_frames_T: frames per video T.
    feature_dim: D.
    batch_size: B; the count is divided by B.
    train: count the training-mode forward (batch statistics, dropout) instead of eval mode.
    dtype: dtype of the frames input.
    scan_aware: count scans for all their steps (`scan_aware_flops`); False reads XLA's plain count
      (right only for models without scans or built with fully unrolled scans).
    rng_names: rng streams passed in train mode. Their key uses the 'unsafe_rbg' generator (XLA's
      RngBitGenerator), because threefry's random-bit rounds compile to a while loop.
  """
  if num_frames_T < 1 or feature_dim < 1 or batch_size < 1:
    raise ValueError(f"num_frames_T={num_frames_T}, feature_dim={feature_dim}, batch_size={batch_size} "
                     "must all be >= 1")

  def forward(variables, frames, num_frames, rng):
    if train:
      rngs = dict(zip(rng_names, jax.random.split(rng, len(rng_names))))
      out, updates = model.apply(variables, frames, num_frames, train=True, rngs=rngs,
                                 mutable=["batch_stats"])
      return out.logits, updates
    return model.apply(variables, frames, num_frames, train=False).logits

  args = (_abstract(variables), jax.ShapeDtypeStruct((batch_size, num_frames_T, feature_dim), dtype),
          jax.ShapeDtypeStruct((batch_size,), jnp.int32), jax.random.key(0, impl="unsafe_rbg"))
  count = scan_aware_flops if scan_aware else compiled_flops
  return count(forward, *args) / batch_size


def param_count(variables: Mapping[str, Any]) -> int:
  """Number of scalars in the 'params' collection (batch statistics are not parameters)."""
  if "params" not in variables:
    raise ValueError(f"variables have no 'params' collection (collections: {sorted(variables)})")
  return int(sum(math.prod(np.shape(x)) for x in jax.tree.leaves(variables["params"])))


def per_video_flops_split(flops_at_T: Mapping[int, float]) -> Tuple[float, float]:
  """Least-squares fit flops(T) = a * T + b over several frame counts T.

  Args:
    flops_at_T: {T: flops per video at T frames}, at least two distinct T.

  Returns:
    (a, b): per-frame FLOPs a, and per-video FLOPs b (hidden layers, classifier: the part that does not
    shrink with k).
  """
  if len(flops_at_T) < 2:
    raise ValueError(f"need flops at >= 2 distinct frame counts to split, got {dict(flops_at_T)}")
  t = np.array(list(flops_at_T), dtype=np.float64)
  f = np.array([flops_at_T[k] for k in flops_at_T], dtype=np.float64)
  a, b = np.polyfit(t, f, 1)
  return float(a), float(b)


def family_rows(family: str, flops_by_frames: Mapping[int, float], params_by_frames: Mapping[int, int], *,
                teacher_frames: int) -> list:
  """Table rows for one family: the teacher (at `teacher_frames`) and one student per other T.

  The per-video part comes from `per_video_flops_split` over all given T; when the teacher's architecture
  differs from the students' (H-RNN block geometry) it is an approximation, and with a single student it
  is the line through two points.
  """
  if teacher_frames not in flops_by_frames:
    raise ValueError(f"{family}: no flops for the teacher's {teacher_frames} frames "
                     f"(have {sorted(flops_by_frames)})")
  a, b = per_video_flops_split(flops_by_frames) if len(flops_by_frames) >= 2 else (float("nan"),) * 2
  teacher = flops_by_frames[teacher_frames]
  rows = []
  for t in sorted(flops_by_frames, reverse=True):
    rows.append(dict(name=f"{family} {'teacher' if t == teacher_frames else 'student'}", frames=t,
                     flops=flops_by_frames[t], params=params_by_frames.get(t), ratio=teacher / flops_by_frames[t],
                     per_video=b, per_frame=a))
  return rows


def _si(x: float, unit: str = "") -> str:
  if x is None or (isinstance(x, float) and math.isnan(x)):
    return "-"
  for scale, prefix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
    if abs(x) >= scale:
      return f"{x / scale:.3f} {prefix}{unit}"
  return f"{x:.0f} {unit}".rstrip()


def flops_table(rows: Iterable[Mapping[str, Any]]) -> str:
  """A markdown table of FLOPs per video.

  Each row needs `name`, `frames`, `flops` (per video); optional: `params`, `ratio` (teacher FLOPs /
  this row's FLOPs), `per_video` (FLOPs per video independent of the frame count, from
  `per_video_flops_split`) and `per_frame`. Missing optional values print as '-'.
  """
  header = ("| model | frames | FLOPs/video | params | teacher/this | per-frame FLOPs | per-video FLOPs "
            "| per-video share |")
  lines = [header, "|---|---:|---:|---:|---:|---:|---:|---:|"]
  for r in rows:
    missing = {"name", "frames", "flops"} - set(r)
    if missing:
      raise ValueError(f"flops_table row {dict(r)} lacks {sorted(missing)}")
    per_video = r.get("per_video")
    share = "-" if per_video is None or math.isnan(per_video) else f"{100 * per_video / r['flops']:.1f}%"
    ratio = r.get("ratio")
    lines.append(
        f"| {r['name']} | {r['frames']} | {_si(r['flops'])} | {_si(r.get('params'))} | "
        f"{'-' if ratio is None else f'{ratio:.2f}x'} | {_si(r.get('per_frame'))} | {_si(per_video)} | {share} |")
  return "\n".join(lines)
