"""The FLOPs table of a config (`python -m fewframes_jax.main --mode=flops`): the teacher at
data.max_frames against the student at each of the paper's k, with parameter counts and the split of
each network's FLOPs into a per-frame part and a per-video part that does not shrink with k.

FLOPs are XLA's cost analysis of the compiled eval-mode forward pass, per video, with recurrent scans
counted for all their steps (`flops.model_cost`). Parameters are abstract (shape-only), so paper-size
models cost no memory here. A student at each k is built with `models.network_at_k` (an H-RNN
student gets ceil(k / 6) blocks), whatever the config's own `student.hrnn.num_blocks`.
"""
from typing import Any, Dict, List, Optional, Sequence

import ml_collections

from fewframes_jax.metrics import flops as flops_lib
from fewframes_jax import specs
from fewframes_jax.models import build_model, network_at_k
from fewframes_jax.paper.grid import PAPER_KS


def family_label(config: ml_collections.ConfigDict) -> str:
  """'nextvlad', or 'teacher->student' for a cross-family config."""
  t, s = config.teacher.name, config.student.name
  return t if t == s else f"{t}->{s}"


def flops_rows(config: ml_collections.ConfigDict, ks: Optional[Sequence[int]] = None) -> List[Dict[str, Any]]:
  """The table's rows (`flops.family_rows`): the teacher at data.max_frames first, then the student at
  each k in `ks` (default the paper's, `paper.grid.PAPER_KS`) and at `student.k`, by decreasing k;
  k >= max_frames is skipped.

  The per-frame / per-video split is fitted over the students only (H-RNN's teacher has another block
  layout), when there are at least two of them.
  """
  d = config.data
  feature_dim = sum(d.feature_sizes)
  kw = dict(num_classes=d.num_classes, feature_sizes=tuple(d.feature_sizes), dtype=config.dtype)
  ks = sorted(set(PAPER_KS if ks is None else ks) | {config.student.k})
  flops_by_frames, params_by_frames = {}, {}
  spec = specs.RunSpec.from_config(config)
  teacher = build_model(spec.teacher, **kw)
  flops_by_frames[d.max_frames], params_by_frames[d.max_frames] = flops_lib.model_cost(
      teacher, frames=d.max_frames, feature_dim=feature_dim)
  for k in ks:
    if k >= d.max_frames:
      continue
    student = build_model(network_at_k(spec.student, k), **kw)
    flops_by_frames[k], params_by_frames[k] = flops_lib.model_cost(student, frames=k, feature_dim=feature_dim)
  students = [k for k in flops_by_frames if k != d.max_frames]
  return flops_lib.family_rows(family_label(config), flops_by_frames, params_by_frames,
                               teacher_frames=d.max_frames, fit_frames=students if len(students) >= 2 else None)


def flops_report(config: ml_collections.ConfigDict, ks: Optional[Sequence[int]] = None) -> str:
  """A title line and the markdown table of `flops_rows(config, ks)`."""
  d = config.data
  title = (f"FLOPs per video (XLA cost analysis, eval forward, {d.num_classes} classes, dtype {config.dtype}). "
           "'per-video FLOPs' is the part that does not shrink with k (hidden layers, classifier), from a "
           "linear fit of FLOPs against frames.")
  return title + "\n\n" + flops_lib.flops_table(flops_rows(config, ks))
