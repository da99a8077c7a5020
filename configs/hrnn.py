"""The paper's H-RNN (hierarchical 2-layer LSTM, 1024 cells, MoE head): teacher on 20 blocks x 15 frames,
student on k frames in ceil(k/6) blocks (k=30: 5 x 6 as the official code).

  python -m fewframes_jax.main --config=configs/hrnn.py:k=10 --workdir=runs/hrnn_k10            # k = 6/10/15/20/30
  python -m fewframes_jax.main --config=configs/hrnn.py:k=30,mode=teacher --workdir=runs/hrnn_t  # Teacher-Skyline
  python -m fewframes_jax.main --config=configs/hrnn.py:k=30,mode=serial \
      --config.teacher_workdir=runs/hrnn_t --workdir=runs/hrnn_serial_k30                        # the paper's best
  python -m fewframes_jax.main --config=configs/hrnn.py:k=30,mode=student_only,sampling=first ...  # a baseline

Add `,cpu` to the argument for the 2-core CPU size. Paper figures: Table 1 in ../shared/PAPER.md.
"""
from fewframes_jax.configs import base


def get_config(arg=None):
  return base.experiment("hrnn", k=30, arg=arg)
