"""GAP against frames read for an any-k student: each fixed budget, and early exit over a threshold
sweep (the training-free rules and the learned gate), with the FLOPs of every exit taken counted.

  python -m fewframes_jax.exits --workdir=<an any-k run> [--output=curve.json] [--gate_videos=1000]

One pass over the eval split computes every exit of every video (`early_exit.ExitPlan.outputs`) and
keeps, per (video, exit), the top-20 (scores, classes, hits), the rule scores and the gate's features
(`ExitRecords`). A threshold picks for each video the first exit whose score reaches it (the last exit
otherwise) and GAP is computed exactly over those top-20 lists (`metrics.EvaluationMetrics`); this equals
the batched execution (`early_exit.run_waves`), which decides on the same scores (the tests check it).
The gate is fitted first on `gate_videos` training videos (`exit_gate.py`) and saved with the run.

Cost per video at exit x: frames read min(n, k_x); FLOPs = sum over exits e <= x of exit e's XLA count
(incremental VLAD: its new frames plus the shared head; recurrent: the whole forward at k_e) plus one
decision per exit passed (the gate's MLP for the gate rule; the rules' top-k are not counted).
"""
import dataclasses
from typing import Any, Dict, List, Optional, Sequence, Tuple

import jax
import jax.numpy as jnp
import numpy as np

from fewframes_jax import specs
from fewframes_jax.exits import early_exit
from fewframes_jax.exits import exit_gate
from fewframes_jax import inference
from fewframes_jax import metrics as metrics_lib
from fewframes_jax.data.quantization import dequantize

THRESHOLDS = {"stable": (0.7, 0.8, 0.85, 0.9, 0.95, 1.0), "confident": (0.3, 0.5, 0.7, 0.8, 0.9, 0.95, 0.99),
              "gate": (0.5, 0.7, 0.8, 0.85, 0.9, 0.92, 0.94, 0.95, 0.96, 0.97, 0.98)}


@dataclasses.dataclass
class ExitRecords:
  """Per (video, exit) results of one pass: scores/class_ids/hits [N, E, 20], features [N, E, F],
  rule scores {'stable'|'confident': [N, E]}, targets [N, E] (the gate's pseudo-labels), and per video
  num_labels [N], num_frames [N]; class_positives [C] over the videos; group_labels {group: [N]} each
  video's labels in a class group (`class_groups` of `exit_records`)."""
  scores: np.ndarray
  class_ids: np.ndarray
  hits: np.ndarray
  features: np.ndarray
  rule_scores: Dict[str, np.ndarray]
  targets: np.ndarray
  num_labels: np.ndarray
  num_frames: np.ndarray
  class_positives: np.ndarray
  group_labels: Dict[str, np.ndarray] = dataclasses.field(default_factory=dict)


def plan_of(network: inference.Network) -> early_exit.ExitPlan:
  """The exit plan of a restored any-k student: its k_max model, exits and order."""
  budgets = network.spec.student.budgets
  if budgets is None:
    raise ValueError("the run's student is not an any-k student (student.k_min is unset): early exit needs one")
  model = network.forward.model
  if network.forward.selection.k != budgets.k_max:  # restored at a smaller budget: back to k_max
    raise ValueError("exit_curve needs the student at its largest budget (restore it with budget=None)")
  return early_exit.ExitPlan(model=model, exits=network.spec.student.exits, k_max=budgets.k_max,
                             order=budgets.order, scorer=network.forward.selection.scorer)


def _batch_fn(plan: early_exit.ExitPlan, class_groups: Dict[str, np.ndarray]):
  num_exits = len(plan.exits)

  def fn(variables, frames_u8, num_frames, labels, valid):
    n = num_frames.astype(jnp.int32)
    view = plan.view(variables, dequantize(frames_u8, n), n)
    probs = plan.outputs(variables, view)
    out = {"scores": [], "class_ids": [], "hits": [], "features": [], "stable": [], "confident": [], "targets": []}
    for e, p in enumerate(probs):
      top = metrics_lib.top_k_hits(p, labels, metrics_lib.TOP_K)
      previous = probs[e - 1] if e else None
      out["scores"].append(top.scores)
      out["class_ids"].append(top.class_ids)
      out["hits"].append(top.hits)
      out["features"].append(exit_gate.features(p, previous, e, num_exits))
      for rule in ("stable", "confident"):
        out[rule].append(early_exit.exit_scores(rule, p, previous, e, num_exits))
      out["targets"].append(exit_gate.settled_targets(p, probs[-1]))
    out = {k: jnp.stack(v, axis=1) for k, v in out.items()}
    out["num_labels"] = metrics_lib.top_k_hits(probs[-1], labels, 1).num_labels
    out["class_positives"] = metrics_lib.class_positive_counts(labels, valid)
    for name, classes in class_groups.items():
      out[f"group_labels/{name}"] = jnp.sum((labels > 0) & jnp.asarray(classes)[None, :], axis=1)
    return out

  return jax.jit(fn)


def exit_records(network: inference.Network, batches, *, max_videos: int = 0,
                 class_groups: Optional[Dict[str, np.ndarray]] = None) -> ExitRecords:
  """One pass over full-frame batches (frames u8[B, T, D], num_frames, labels, valid), every exit.
  `class_groups` {name: bool[C]}: also count each video's labels per group (for `metrics_at(group=...)`)."""
  plan = plan_of(network)
  fn = _batch_fn(plan, dict(class_groups or {}))
  parts: Dict[str, List[np.ndarray]] = {}
  class_positives = None
  seen = 0
  for batch in batches:
    out = jax.device_get(fn(network.variables, batch["frames"], batch["num_frames"], batch["labels"], batch["valid"]))
    valid = np.asarray(batch["valid"], bool)
    for key, value in out.items():
      if key == "class_positives":
        class_positives = value if class_positives is None else class_positives + value
      else:
        parts.setdefault(key, []).append(np.asarray(value)[valid])
    parts.setdefault("num_frames", []).append(np.asarray(batch["num_frames"])[valid])
    seen += int(valid.sum())
    if max_videos and seen >= max_videos:
      break
  cat = {k: np.concatenate(v) for k, v in parts.items()}
  return ExitRecords(scores=cat["scores"], class_ids=cat["class_ids"], hits=cat["hits"], features=cat["features"],
                     rule_scores={"stable": cat["stable"], "confident": cat["confident"]}, targets=cat["targets"],
                     num_labels=cat["num_labels"], num_frames=cat["num_frames"], class_positives=class_positives,
                     group_labels={k.split("/", 1)[1]: v for k, v in cat.items() if k.startswith("group_labels/")})


def first_exit(scores: np.ndarray, threshold: float) -> np.ndarray:
  """i32[N]: per video the first exit e < E - 1 whose score [N, E] reaches `threshold`, else E - 1."""
  stop = scores[:, :-1] >= threshold
  return np.where(stop.any(axis=1), np.argmax(stop, axis=1), scores.shape[1] - 1).astype(np.int32)


def metrics_at(records: ExitRecords, exit_index: np.ndarray, num_classes: int,
               group: Optional[Tuple[str, np.ndarray]] = None) -> Dict[str, float]:
  """GAP, mAPs, Hit@1 of each video's top-20 at its exit. `group` (name, bool[C]), a class group of the
  records: only the labels and predictions of those classes count (the others' predictions rank last,
  unretrieved, and their positives are left out): e.g. the GAP over burst classes alone."""
  rows = np.arange(len(exit_index))
  scores, ids = records.scores[rows, exit_index], records.class_ids[rows, exit_index]
  hits, positives, num_labels = records.hits[rows, exit_index], records.class_positives, records.num_labels
  if group is not None:
    name, classes = group
    num_labels = records.group_labels[name]
    keep = np.asarray(classes, bool)[ids]
    scores, hits = np.where(keep, scores, -np.inf).astype(np.float32), hits & keep
    order = np.argsort(-scores, axis=1, kind="stable")  # the kept ones first, still by score
    scores, ids, hits = (np.take_along_axis(a, order, axis=1) for a in (scores, ids, hits))
    positives = np.where(classes, positives, 0)
  acc = metrics_lib.EvaluationMetrics(num_classes)
  acc.update_top_k(scores, ids, hits, num_labels=num_labels, class_positive_counts=positives,
                   perr=np.zeros(len(rows), np.float32))
  result = acc.result()
  result.pop("perr", None)  # not computed from the top-20 alone
  return result


def exit_flops(plan: early_exit.ExitPlan, variables, *, feature_dim: int, gate: Optional[exit_gate.Gate] = None,
               max_frames: int = 0) -> Dict[str, Any]:
  """XLA's FLOPs per video of each exit (a full-length video; batch 1), of one gate decision, and of the
  nested order's ranking of a `max_frames`-frame video ('order': 0 for coarse-to-fine, a lookup by
  length; far_from_mean's distances to the mean of every frame, or the learned scorer, otherwise)."""
  from fewframes_jax.metrics import flops as flops_lib  # pylint: disable=g-import-not-at-top
  view = early_exit.NestedView(jnp.zeros([1, plan.k_max, feature_dim], jnp.float32),
                               jnp.arange(plan.k_max, dtype=jnp.int32)[None, :],
                               jnp.full([1], plan.k_max, jnp.int32))
  per_exit, carry = [], None
  for e in range(len(plan.exits)):
    per_exit.append(flops_lib.scan_aware_flops(
        lambda v, view, c, e=e: plan.exit_step(v, view, e, c)[0], variables, view, carry))
    carry = plan.exit_step(variables, view, e, carry)[1]
  gate_flops = 0.0
  if gate is not None:
    f = len(plan.exits) + 2 + min(metrics_lib.TOP_K, _num_classes(plan, variables, feature_dim))
    gate_flops = flops_lib.compiled_flops(gate.score, jnp.zeros([1, f], jnp.float32))
  order_flops = 0.0
  if plan.order != "coarse_to_fine" and max_frames:
    order_flops = flops_lib.compiled_flops(plan.ranks, variables, jnp.zeros([1, max_frames, feature_dim], jnp.float32),
                                           jnp.full([1], max_frames, jnp.int32))
  return {"per_exit": per_exit, "gate": gate_flops, "order": order_flops}


def _num_classes(plan, variables, feature_dim) -> int:
  probs = jax.eval_shape(lambda v: plan.exit_step(v, early_exit.NestedView(
      jnp.zeros([1, plan.k_max, feature_dim]), jnp.zeros([1, plan.k_max], jnp.int32), jnp.ones([1], jnp.int32)),
      0)[0], variables)
  return probs.shape[-1]


def curve_rows(records: ExitRecords, plan: early_exit.ExitPlan, flops: Dict[str, Any], *, num_classes: int,
               gate: Optional[exit_gate.Gate] = None, thresholds: Optional[Dict[str, Sequence[float]]] = None,
               class_groups: Optional[Dict[str, np.ndarray]] = None) -> List[Dict[str, Any]]:
  """One row per fixed budget ('budget': every video to that exit, no decision, the any-k student's own
  forward at that k) and per (rule, threshold). `class_groups` {name: bool[C]} adds each group's GAP
  (`metrics_at(group=...)`) as 'gap_<name>' and the mean frames read by the videos with a label of the
  group as 'frames_<name>'."""
  thresholds = thresholds or THRESHOLDS
  order = flops.get("order", 0.0)  # every video's frames are ranked once, whatever exit it takes
  cum = np.cumsum(flops["per_exit"]) + order
  num_exits, n = len(plan.exits), len(records.num_frames)
  rows = []

  def add(rule, threshold, exit_index, flops_per_video):
    m = metrics_at(records, exit_index, num_classes)
    row = {"rule": rule, "threshold": threshold, "gap": m["gap"], "map_all_classes": m["map_all_classes"],
           "map": m["map"], "hit_at_one": m["hit_at_one"],
           "mean_frames": float(plan.frames_read(records.num_frames, exit_index).mean()),
           "mean_flops": float(np.mean(flops_per_video)),
           "exit_share": np.bincount(exit_index, minlength=num_exits).tolist()}
    frames = plan.frames_read(records.num_frames, exit_index)
    for name, classes in (class_groups or {}).items():
      row[f"gap_{name}"] = metrics_at(records, exit_index, num_classes, (name, classes))["gap"]
      has = records.group_labels[name] > 0  # the videos with a label of the group: where do they stop?
      row[f"frames_{name}"] = float(frames[has].mean()) if has.any() else float("nan")
    rows.append(row)

  for e, k in enumerate(plan.exits):
    add("budget", k, np.full([n], e, np.int32), flops["budget"][e] + order)
  for rule, values in thresholds.items():
    if rule == "gate":
      if gate is None:
        continue
      x = records.features.reshape(-1, records.features.shape[-1])
      scores = np.asarray(gate.score(jnp.asarray(x))).reshape(records.features.shape[:2])
      decision = flops["gate"]
    else:
      scores, decision = records.rule_scores[rule], 0.0
    for threshold in values:
      exit_index = first_exit(scores, threshold)
      decisions = np.minimum(exit_index + 1, num_exits - 1)  # none after the last exit
      add(rule, threshold, exit_index, cum[exit_index] + decisions * decision)
  return rows


def fit_gate(records: ExitRecords, plan: early_exit.ExitPlan, *, seed: int = 0) -> exit_gate.Gate:
  """The gate fitted on (video, exit e < E) pairs of `records` (training videos)."""
  x = records.features[:, :-1].reshape(-1, records.features.shape[-1])
  y = records.targets[:, :-1].reshape(-1)
  return exit_gate.fit(x, y, plan.exits, seed=seed)


def budget_flops(network: inference.Network, exits: Sequence[int]) -> List[float]:
  """FLOPs per video of the any-k student's own forward at each budget (no early exit)."""
  from fewframes_jax.metrics import flops as flops_lib  # pylint: disable=g-import-not-at-top
  out = []
  for k in exits:
    forward = inference.student_forward(network.spec, network.forward.model, k)
    slots = forward.selection.slots or k
    out.append(flops_lib.model_cost(forward.model, frames=slots, feature_dim=network.feature_dim)[0])
  return out


def run(workdir: str, *, gate_videos: int = 1000, eval_pattern: str = "", seed: int = 0,
        class_groups: Optional[Dict[str, np.ndarray]] = None) -> Dict[str, Any]:
  """Fits and saves the gate on training videos, then the exit curve on the eval split of the run in
  `workdir` (`class_groups`: see `curve_rows`). Returns {'rows', 'flops', 'exits', 'num_videos',
  'gate_videos'}."""
  from fewframes_jax import checkpoint as ckpt_lib  # pylint: disable=g-import-not-at-top
  from fewframes_jax.data import eval_batches as eval_input  # pylint: disable=g-import-not-at-top  (TensorFlow)
  network = ckpt_lib.restore(workdir).network("student")
  plan = plan_of(network)
  data = network.spec.data
  train_data = dataclasses.replace(data, eval_pattern=data.train_pattern)
  gate_records = exit_records(network, eval_input.eval_batches(train_data, process_index=0, process_count=1), max_videos=gate_videos)
  gate = fit_gate(gate_records, plan, seed=seed)
  gate.save(workdir)
  eval_data = dataclasses.replace(data, eval_pattern=eval_pattern) if eval_pattern else data
  records = exit_records(network, eval_input.eval_batches(eval_data, process_index=0, process_count=1), class_groups=class_groups)
  flops = exit_flops(plan, network.variables, feature_dim=network.feature_dim, gate=gate,
                     max_frames=network.max_frames)
  flops["budget"] = budget_flops(network, plan.exits)
  rows = curve_rows(records, plan, flops, num_classes=data.num_classes, gate=gate, class_groups=class_groups)
  return {"rows": rows, "flops": flops, "exits": list(plan.exits), "num_videos": int(len(records.num_frames)),
          "gate_videos": int(len(gate_records.num_frames))}


def format_rows(rows: Sequence[Dict[str, Any]]) -> str:
  lines = ["| rule | threshold | GAP | mAP† | mean frames read | FLOPs/video | videos stopping at each exit |",
           "|:---|---:|---:|---:|---:|---:|:---|"]
  for r in rows:
    lines.append(f"| {r['rule']} | {r['threshold']:g} | {r['gap']:.4f} | {r['map_all_classes']:.4f} | "
                 f"{r['mean_frames']:.1f} | {r['mean_flops'] / 1e6:.2f} M | {r['exit_share']} |")
  return "\n".join(lines)
