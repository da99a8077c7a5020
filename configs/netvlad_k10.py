"""netvlad teacher (all 300 frames) and a uniform k=10 student, trained in parallel on the bundled data.

  python -m fewframes_jax.main --config=configs/netvlad_k10.py --workdir=runs/netvlad_k10          # paper size (GPU)
  python -m fewframes_jax.main --config=configs/netvlad_k10.py:cpu --workdir=runs/netvlad_k10_cpu  # 2-core CPU

Variants by argument: `:mode=teacher` (skyline), `:mode=student_only,sampling=random` (a k-frame baseline),
`:mode=serial` with `--config.teacher_workdir=<teacher run>`, `:mode=finetune` with `--config.init_workdir=...`.
Expected results and timings: README.md and RESULTS.md.
"""
from fewframes_jax.configs import base


def get_config(arg=None):
  return base.experiment("netvlad", k=10, arg=arg)
