"""Human-readable reports: the FLOPs table (`main --mode=flops`) and the end-of-training summary.

FLOPs are XLA's cost analysis of the compiled eval-mode forward pass, per video, with recurrent scans
counted for all their steps (`flops.forward_flops_per_video`). Parameters are abstract (shape-only),
so paper-size models cost no memory here.
"""
from typing import Dict, Optional, Sequence, Tuple

import jax
import jax.numpy as jnp
import ml_collections

from fewframes_jax import flops as flops_lib
from fewframes_jax.models import build_model

PAPER_KS = (6, 10, 15, 20, 30)


def _abstract_variables(model, frames: int, feature_dim: int):
  x = jax.ShapeDtypeStruct((1, frames, feature_dim), jnp.float32)
  n = jax.ShapeDtypeStruct((1,), jnp.int32)

  def init(rng, x, n):
    return model.init({"params": rng, "dropout": rng, "frames": rng}, x, n, train=False)

  return jax.eval_shape(init, jax.random.PRNGKey(0), x, n)


def model_cost(model, *, frames: int, feature_dim: int) -> Tuple[float, int]:
  """(FLOPs per video of the eval forward pass at `frames` frames, parameter count)."""
  variables = _abstract_variables(model, frames, feature_dim)
  return (flops_lib.forward_flops_per_video(model, variables, num_frames_T=frames, feature_dim=feature_dim),
          flops_lib.param_count(variables))


def _student_model_config(config, k: int) -> ml_collections.ConfigDict:
  from configs import base  # pylint: disable=g-import-not-at-top
  m = ml_collections.ConfigDict(config.student.to_dict())
  m.hrnn.num_blocks = base.hrnn_student_blocks(k)
  return m


def flops_report(config: ml_collections.ConfigDict, ks: Sequence[int] = PAPER_KS) -> str:
  """Markdown table: the teacher at data.max_frames vs the student at each k, for the config's families."""
  d = config.data
  feature_dim = sum(d.feature_sizes)
  kw = dict(num_classes=d.num_classes, feature_sizes=tuple(d.feature_sizes), dtype=config.dtype)
  ks = sorted(set(ks) | {config.student.k})
  flops_by_frames, params_by_frames = {}, {}
  teacher = build_model(config.teacher, **kw)
  flops_by_frames[d.max_frames], params_by_frames[d.max_frames] = model_cost(
      teacher, frames=d.max_frames, feature_dim=feature_dim)
  for k in ks:
    if k >= d.max_frames:
      continue
    student = build_model(_student_model_config(config, k), **kw)
    flops_by_frames[k], params_by_frames[k] = model_cost(student, frames=k, feature_dim=feature_dim)
  family = config.teacher.name if config.teacher.name == config.student.name else (
      f"{config.teacher.name}->{config.student.name}")
  # The per-video part is fitted over the students only: H-RNN's teacher has another block layout.
  students = [k for k in flops_by_frames if k != d.max_frames]
  rows = flops_lib.family_rows(family, flops_by_frames, params_by_frames, teacher_frames=d.max_frames,
                               fit_frames=students if len(students) >= 2 else None)
  title = (f"FLOPs per video (XLA cost analysis, eval forward, {d.num_classes} classes, dtype {config.dtype}). "
           "'per-video FLOPs' is the part that does not shrink with k (hidden layers, classifier), from a "
           "linear fit of FLOPs against frames.")
  return title + "\n\n" + flops_lib.flops_table(rows)


def summary_table(config, nets, state, results: Dict[str, Dict[str, float]]) -> str:
  """The end-of-training table: GAP, both mAPs, Hit@1, FLOPs per video and the teacher/student ratio."""
  d = config.data
  feature_dim = sum(d.feature_sizes)
  costs: Dict[str, Optional[float]] = {}
  if nets.has_teacher:
    costs["teacher"] = model_cost(nets.teacher_model, frames=d.max_frames, feature_dim=feature_dim)[0]
  if nets.has_student:
    costs["student"] = model_cost(nets.student_model, frames=nets.k, feature_dim=feature_dim)[0]
  lines = ["| network | frames | GAP | mAP | mAP (all classes) | Hit@1 | PERR | FLOPs/video |",
           "|---|---:|---:|---:|---:|---:|---:|---:|"]
  for net in ("teacher", "student"):
    if net not in results:
      continue
    r = results[net]
    frames = d.max_frames if net == "teacher" else f"{nets.k} ({nets.sampling})"
    lines.append(f"| {net} | {frames} | {r['gap']:.4f} | {r['map']:.4f} | {r['map_all_classes']:.4f} | "
                 f"{r['hit_at_one']:.4f} | {r['perr']:.4f} | {costs.get(net, float('nan')) / 1e6:.1f} M |")
  footer = [f"mode={config.mode}, teacher={config.teacher.name}, student={config.student.name}, "
            f"step={int(jax.device_get(state.step))}, eval videos={next(iter(results.values()))['num_videos'] if results else 0}. "
            "mAP: classes with >= 1 positive (current starter); mAP (all classes): the 2017 code's, as the paper."]
  if "teacher" in costs and "student" in costs:
    footer.append(f"FLOP ratio teacher/student: {costs['teacher'] / costs['student']:.2f}x")
  return "\n".join(lines + [""] + footer)
