"""NeXtVLAD teacher (all 300 frames) and a uniform k=10 student, by default Serial L_pred + L_CE.

  python -m fewframes_jax.main --config=configs/nextvlad_k10.py:cpu --workdir=runs/nextvlad_k10_cpu   # 2-core CPU
  python -m fewframes_jax.main --config=configs/nextvlad_k10.py:cpu,mode=parallel --workdir=runs/nextvlad_k10_parallel_cpu

The first trains the teacher in `<workdir>/teacher`, then the student against it, frozen, with L_CE + L_pred
(`--config.teacher_workdir=<run>`: from a teacher trained before); the second trains both together, with
the family's loss weights. Without `:cpu`, the paper's sizes (a GPU run). Every argument and mode:
`configs/base.py:headline`; results and timings: README.md and RESULTS.md.
"""
from fewframes_jax.configs import base


def get_config(arg=None):
  return base.headline("nextvlad", k=10, arg=arg)
