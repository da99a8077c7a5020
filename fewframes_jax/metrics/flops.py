"""FLOPs of compiled functions from XLA's cost analysis, with loops counted in full.

XLA's `cost_analysis()` counts a while loop's body ONCE, whatever its trip count (jax 0.10, CPU: a
100-step `lax.scan` reports 1/100 of its FLOPs). Recurrent models (H-RNN, LSTM/GRU) are scans, so a
plain count under-reports them by about their number of steps. `scan_aware_flops` counts them in full,
without touching the model, in one of two ways:

  * `method="scale"` (default): compile the function as is and read XLA's count, in which each scan body
    appears once; compile each scan body on its own (XLA's count again) and add `length - 1` more copies
    of it. Nested scans recurse: a body's true cost is its own count plus its inner scans' corrections.
    The optimized HLO is then checked: its while loops' known trip counts must be exactly the scans'
    lengths, otherwise (a `lax.while_loop`, a `fori_loop` with traced bounds, threefry random bits, a
    scan under `cond`) it raises rather than return an under-count. Compile time stays that of the model.
  * `method="unroll"`: trace the function to a jaxpr and re-evaluate it with every scan replaced by its
    unrolled body, then count that straight-line program: the program a model built with `unroll=T`
    compiles to, with no config needed. Two drawbacks make it the cross-check, not the default:
    XLA's compile time grows with the steps (a 300-step 2-layer 1024-cell LSTM took about 10 minutes on
    2 CPU cores, against about 1 s for "scale"); and once unrolled, an elementwise op applied to the
    whole [B, T, D] input before the scan (a normalisation, a batch norm) is fused into every step's
    input slice, and XLA's cost analysis counts the fused op at its full size in each step, so its cost
    is counted T times (a batch norm before a 12-step toy LSTM added 6%). The same inflation affects
    models built with `unroll=T` and counted with `compiled_flops`.

The two methods agree (up to the loop counter's add and compare per step) where that inflation does
not arise; the tests check both against analytic counts on toy scans and toy recurrent models.

FLOPs here are XLA's: a multiply-add counts 2, and elementwise ops (adds, compares, ...) count 1 per
element (transcendentals such as exp and tanh are reported separately and not included).
"""
import collections
import functools
import math
from typing import Any, Callable, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.extend import core as jex_core

# Primitives whose sub-jaxpr is an ordinary call: its scans are counted like top-level ones.
_CALL_JAXPR_PARAMS = {
    "pjit": "jaxpr", "jit": "jaxpr", "closed_call": "call_jaxpr", "core_call": "call_jaxpr",
    "custom_jvp_call": "call_jaxpr", "custom_vjp_call": "call_jaxpr",
    "custom_vjp_call_jaxpr": "fun_jaxpr", "checkpoint": "jaxpr", "remat": "jaxpr", "remat2": "jaxpr",
}
SCAN_FLOPS_METHODS = ("scale", "unroll")


def _cost_flops(compiled) -> float:
  cost = compiled.cost_analysis()
  if isinstance(cost, (list, tuple)):  # older jax: one dict per HLO module; jit has one module
    if len(cost) != 1:
      raise ValueError(f"expected one cost-analysis entry, got {len(cost)}")
    cost = cost[0]
  if not cost:
    raise ValueError(f"XLA cost analysis is not available on this backend (got {cost!r})")
  return float(cost.get("flops", 0.0))  # XLA omits the key when a program has no FLOPs


def _abstract(tree):
  return jax.tree.map(lambda x: jax.ShapeDtypeStruct(np.shape(x), jnp.result_type(x)), tree)


def _avals(jaxpr):
  return [jax.ShapeDtypeStruct(v.aval.shape, v.aval.dtype, weak_type=v.aval.weak_type) for v in jaxpr.invars]


def compiled_flops(fn: Callable, *args, **kwargs) -> float:
  """XLA's FLOP count of `jax.jit(fn)(*args)`, as compiled for the default backend.

  `args` (arrays, pytrees or `jax.ShapeDtypeStruct`s) are traced; `kwargs` are closed over as static
  values. While-loop bodies are counted once: use `scan_aware_flops` for functions with scans.
  """
  compiled = jax.jit(functools.partial(fn, **kwargs)).lower(*_abstract(args)).compile()
  return _cost_flops(compiled)


def while_loops(hlo_text: str) -> list:
  """Trip counts of the `while` instructions in optimized HLO text (None where XLA does not know it)."""
  counts = []
  marker = '"known_trip_count":{"n":"'
  for line in hlo_text.splitlines():
    if " while(" not in line:
      continue
    at = line.find(marker)
    counts.append(int(line[at + len(marker):line.index('"', at + len(marker))]) if at >= 0 else None)
  return counts


# ---- method="scale": XLA's count plus (length - 1) more copies of each scan body ----

def _closed_flops(closed, cache) -> float:
  key = id(closed)
  if key not in cache:
    fn = jex_core.jaxpr_as_fun(closed)
    cache[key] = (_cost_flops(jax.jit(fn).lower(*_avals(closed.jaxpr)).compile()), closed)
  return cache[key][0]


def _has_scan(jaxpr) -> bool:
  return any(e.primitive.name == "scan" or any(_has_scan(j) for j in jex_core.jaxprs_in_params(e.params))
             for e in jaxpr.eqns)


def _scan_corrections(jaxpr, cache, lengths) -> float:
  """FLOPs that XLA's count of `jaxpr` misses because it counts each scan body once."""
  extra = 0.0
  for eqn in jaxpr.eqns:
    name = eqn.primitive.name
    if name == "scan":
      body, length = eqn.params["jaxpr"], eqn.params["length"]
      lengths.append(length)
      once = _closed_flops(body, cache)
      inner = _scan_corrections(body.jaxpr, cache, lengths)
      extra += length * (once + inner) - once
    elif name in _CALL_JAXPR_PARAMS and _CALL_JAXPR_PARAMS[name] in eqn.params:
      sub = eqn.params[_CALL_JAXPR_PARAMS[name]]
      extra += _scan_corrections(getattr(sub, "jaxpr", sub), cache, lengths)
    elif any(_has_scan(j) for j in jex_core.jaxprs_in_params(eqn.params)):
      raise ValueError(f"a scan inside '{name}' cannot be counted: only scans at top level, in other "
                       "scans, or in jit/custom_jvp/custom_vjp/checkpoint calls are supported")
  return extra


# ---- method="unroll": re-evaluate the jaxpr with every scan unrolled ----

def _read(env, v):
  return v.val if isinstance(v, jex_core.Literal) else env[v]


def _eval_unrolled(jaxpr, consts, args):
  """Evaluates an (open) jaxpr like `jax.core.eval_jaxpr`, unrolling every scan on the way."""
  env = dict(zip(jaxpr.constvars, consts))
  env.update(zip(jaxpr.invars, args))
  for eqn in jaxpr.eqns:
    invals = [_read(env, v) for v in eqn.invars]
    name = eqn.primitive.name
    if name == "scan":
      outvals = _unrolled_scan(eqn, invals)
    elif name in _CALL_JAXPR_PARAMS and _CALL_JAXPR_PARAMS[name] in eqn.params:
      outvals = _eval_any_unrolled(eqn.params[_CALL_JAXPR_PARAMS[name]], invals)
    else:
      params = eqn.primitive.get_bind_params(eqn.params)
      subfuns = ()
      if isinstance(params, tuple):  # older jax: (subfuns, params)
        subfuns, params = params
      outvals = eqn.primitive.bind(*subfuns, *invals, **params)
      if not eqn.primitive.multiple_results:
        outvals = [outvals]
    env.update(zip(eqn.outvars, outvals))
  return [_read(env, v) for v in jaxpr.outvars]


def _eval_any_unrolled(jaxpr, args):
  if isinstance(jaxpr, jex_core.ClosedJaxpr):
    return _eval_unrolled(jaxpr.jaxpr, jaxpr.consts, args)
  return _eval_unrolled(jaxpr, (), args)


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
    out = _eval_any_unrolled(p["jaxpr"], consts + carry + x_i)
    carry, ys_by_step[i] = list(out[:num_carry]), out[num_carry:]
  if length == 0:
    ys = [jnp.zeros(a.shape, a.dtype) for a in ys_avals]
  else:
    ys = [jnp.stack([ys_by_step[i][j] for i in range(length)]) for j in range(len(ys_avals))]
  return carry + ys


def scan_aware_flops(fn: Callable, *args, method: str = "scale", allow_loops: bool = False,
                     **kwargs) -> float:
  """XLA's FLOP count of `fn(*args)` with every `lax.scan` counted for all of its steps.

  Args:
    fn: the function; `args` are traced (arrays, pytrees or `jax.ShapeDtypeStruct`s), `kwargs` are
      closed over as static values.
    method: "scale" (XLA's count plus `length - 1` more copies of each separately compiled scan body)
      or "unroll" (count the fully unrolled program; exact but slow to compile for long scans).
    allow_loops: if False (default), raise when the compiled program has a while loop that is not one
      of the counted scans (its body would be counted once); if True, accept that under-count.

  Returns:
    FLOPs of the whole call (not per example).
  """
  if method not in SCAN_FLOPS_METHODS:
    raise ValueError(f"method {method!r} is unknown; expected one of {SCAN_FLOPS_METHODS}")
  closed = jax.make_jaxpr(functools.partial(fn, **kwargs))(*_abstract(args))
  flat_avals = _avals(closed.jaxpr)
  if method == "unroll":
    def program(*flat_args):
      return _eval_unrolled(closed.jaxpr, closed.consts, flat_args)
  else:
    program = jex_core.jaxpr_as_fun(closed)
  compiled = jax.jit(program).lower(*flat_avals).compile()
  flops = _cost_flops(compiled)
  lengths = []
  if method == "scale":
    flops += _scan_corrections(closed.jaxpr, {}, lengths)
  # Every scan of 2+ steps must be one HLO while loop with its length (XLA may drop 0- or 1-step ones).
  loops = collections.Counter(n for n in while_loops(compiled.as_text()) if n is None or n > 1)
  loops.subtract(n for n in lengths if n > 1)
  unexplained = [f"{n}: {c:+d}" for n, c in loops.items() if c != 0]
  if unexplained and not allow_loops:
    raise ValueError(
        f"{getattr(fn, '__name__', fn)}: the compiled program's while loops (trip counts "
        f"{while_loops(compiled.as_text())}) do not match its scans (lengths {lengths}; loops minus "
        f"scans per trip count: {unexplained}), so XLA would count some loop bodies once. Use static "
        "loop bounds (lax.scan / fori_loop with Python ints) or pass allow_loops=True to accept the "
        "under-count. Loops of 5 "
        "steps usually come from threefry random bits (e.g. dropout); a key made with "
        "jax.random.key(seed, impl='unsafe_rbg') generates them without a loop.")
  return flops


def forward_flops_per_video(model, variables, *, num_frames_T: int, feature_dim: int, batch_size: int = 1,
                            train: bool = False, dtype=jnp.float32, scan_aware: bool = True,
                            scan_method: str = "scale",
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
    scan_method: `scan_aware_flops`'s method, "scale" (default) or "unroll".
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
    # 'frames': WILLOW's random re-sampling draws at inference too (inference.model_rngs).
    return model.apply(variables, frames, num_frames, train=False, rngs={"frames": rng}).logits

  args = (_abstract(variables), jax.ShapeDtypeStruct((batch_size, num_frames_T, feature_dim), dtype),
          jax.ShapeDtypeStruct((batch_size,), jnp.int32), jax.random.key(0, impl="unsafe_rbg"))
  if scan_aware:
    return scan_aware_flops(forward, *args, method=scan_method) / batch_size
  return compiled_flops(forward, *args) / batch_size


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
                teacher_frames: int, fit_frames: Optional[Iterable[int]] = None) -> List[dict]:
  """Table rows for one family: the teacher (at `teacher_frames`) and one student per other T.

  Args:
    family: label, e.g. "nextvlad".
    flops_by_frames: {T: FLOPs per video}, including the teacher's T.
    params_by_frames: {T: parameter count}; missing T print as '-'.
    teacher_frames: the teacher's T (300).
    fit_frames: the T values the per-frame/per-video split is fitted over (default: all). For a family
      whose teacher and students differ in shape (H-RNN's block geometry) pass the students' T only.

  Returns:
    Row dicts for `flops_table`, teacher first then by decreasing T, with `ratio` = teacher FLOPs / row
    FLOPs and `per_frame_ratio` = (teacher - per_video) / (row - per_video), the ratio of the parts that
    scale with the frame count (about 300 / k when the split fits).
  """
  if teacher_frames not in flops_by_frames:
    raise ValueError(f"{family}: no flops for the teacher's {teacher_frames} frames "
                     f"(have {sorted(flops_by_frames)})")
  fit = {t: flops_by_frames[t] for t in (flops_by_frames if fit_frames is None else fit_frames)}
  a, b = per_video_flops_split(fit) if len(fit) >= 2 else (float("nan"), float("nan"))
  teacher = flops_by_frames[teacher_frames]
  rows = []
  for t in sorted(flops_by_frames, key=lambda t: (t != teacher_frames, -t)):
    f = flops_by_frames[t]
    rows.append(dict(name=f"{family} {'teacher' if t == teacher_frames else 'student'}", frames=t, flops=f,
                     params=params_by_frames.get(t), ratio=teacher / f, per_frame=a, per_video=b,
                     per_frame_ratio=(teacher - b) / (f - b) if f != b else float("nan")))
  return rows


def _num(x) -> bool:
  return x is not None and not (isinstance(x, float) and math.isnan(x))


def _si(x: Optional[float], unit: str = "") -> str:
  if not _num(x):
    return "-"
  for scale, prefix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
    if abs(x) >= scale:
      return f"{x / scale:.3f} {prefix}{unit}"
  return f"{x:.0f} {unit}".rstrip()


def flops_table(rows: Iterable[Mapping[str, Any]]) -> str:
  """A markdown table of FLOPs per video.

  Each row needs `name`, `frames`, `flops` (per video); optional: `params`, `ratio` (teacher FLOPs /
  this row's FLOPs), `per_frame_ratio`, `per_frame` and `per_video` (from `per_video_flops_split`:
  the per-video part does not shrink with k). Missing optional values print as '-'.
  """
  lines = ["| model | frames | FLOPs/video | params | teacher/this | per-frame part teacher/this "
           "| FLOPs per frame | FLOPs per video (fixed) | fixed share |",
           "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
  for r in rows:
    missing = {"name", "frames", "flops"} - set(r)
    if missing:
      raise ValueError(f"flops_table row {dict(r)} lacks {sorted(missing)}")
    per_video, ratio, pf_ratio = r.get("per_video"), r.get("ratio"), r.get("per_frame_ratio")
    share = f"{100 * per_video / r['flops']:.1f}%" if _num(per_video) else "-"
    lines.append(
        f"| {r['name']} | {r['frames']} | {_si(r['flops'])} | {_si(r.get('params'))} | "
        f"{f'{ratio:.2f}x' if _num(ratio) else '-'} | {f'{pf_ratio:.2f}x' if _num(pf_ratio) else '-'} | "
        f"{_si(r.get('per_frame'))} | {_si(per_video)} | {share} |")
  return "\n".join(lines)


def abstract_variables(model, *, frames: int, feature_dim: int):
  """The shapes and dtypes of a model's variables (`jax.eval_shape` of its init: no memory)."""
  x = jax.ShapeDtypeStruct((1, frames, feature_dim), jnp.float32)
  n = jax.ShapeDtypeStruct((1,), jnp.int32)

  def init(rng, x, n):
    return model.init({"params": rng, "dropout": rng, "frames": rng}, x, n, train=False)

  return jax.eval_shape(init, jax.random.PRNGKey(0), x, n)


_MODEL_COSTS: Dict[str, Tuple[float, int]] = {}


def model_cost(model, *, frames: int, feature_dim: int) -> Tuple[float, int]:
  """(FLOPs per video of the eval forward pass at `frames` frames, parameter count), from abstract
  variables: a paper-size model costs no memory here. Memoised by the module's fields (its repr), so the
  end-of-training summary and the paper sweep count each architecture once per process."""
  key = f"{model!r}|{frames}|{feature_dim}"
  if key not in _MODEL_COSTS:
    variables = abstract_variables(model, frames=frames, feature_dim=feature_dim)
    _MODEL_COSTS[key] = (forward_flops_per_video(model, variables, num_frames_T=frames, feature_dim=feature_dim),
                         param_count(variables))
  return _MODEL_COSTS[key]


def compiled_call_flops(fn: Callable, args: Sequence[Any], compiled=None,
                        flops_args: Optional[Sequence[Any]] = None) -> float:
  """XLA's FLOPs of one call `fn(*args)` whose compiled program is `compiled` (benchmarks time it).

  Without while loops the compiled program's own count is exact and is read directly; otherwise (scans,
  threefry's rolled random-bit loop on a CPU), or when no `compiled` is given, `scan_aware_flops`
  counts `fn` on `flops_args` (default `args`; e.g. with an 'unsafe_rbg' key, whose random bits compile
  without a loop), every scan step included.
  """
  if compiled is not None and not while_loops(compiled.as_text()):
    return _cost_flops(compiled)
  return scan_aware_flops(fn, *(args if flops_args is None else flops_args))
