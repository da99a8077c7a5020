"""nextvlad teacher (all 300 frames) and a uniform k=30 student, trained in parallel on the bundled data.

  python -m fewframes_jax.main --config=configs/nextvlad_k30.py --workdir=runs/nextvlad_k30          # paper size (GPU)
  python -m fewframes_jax.main --config=configs/nextvlad_k30.py:cpu --workdir=runs/nextvlad_k30_cpu  # 2-core CPU

Variants by argument: `:mode=teacher` (skyline), `:mode=student_only,sampling=random` (a k-frame baseline),
`:mode=serial` with `--config.teacher_workdir=<teacher run>`, `:mode=finetune` with `--config.init_workdir=...`.
Expected results and timings: README.md and RESULTS.md.
"""
from fewframes_jax.configs import base


def get_config(arg=None):
  return base.experiment("nextvlad", k=30, arg=arg)
