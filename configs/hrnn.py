"""The paper's H-RNN (hierarchical 2-layer LSTM, 1024 cells, MoE head): teacher on 20 blocks x 15 frames,
student on k frames in ceil(k/6) blocks (k=30: 5 x 6 as the official code); by default Serial L_pred + L_CE.

  python -m fewframes_jax.main --config=configs/hrnn.py:k=10,cpu --workdir=runs/hrnn_k10_cpu  # k = 6/10/15/20/30
  python -m fewframes_jax.main --config=configs/hrnn.py:k=30 --workdir=runs/hrnn_k30          # paper size (GPU)
  python -m fewframes_jax.main --config=configs/hrnn.py:k=30,mode=teacher --workdir=runs/hrnn_t  # Teacher-Skyline
  python -m fewframes_jax.main --config=configs/hrnn.py:k=30 --config.teacher_workdir=runs/hrnn_t \
      --config.loss.rep=1 --workdir=runs/hrnn_serial_k30             # the paper's best row, from a trained teacher
  python -m fewframes_jax.main --config=configs/hrnn.py:k=30,mode=student_only,sampling=first ...  # a baseline

Serial (the default): the teacher is trained first, alone, in `<workdir>/teacher` (skipped when it is
already trained there, resumed when it was interrupted), then frozen; the student is trained against it in
`<workdir>` with L_CE + L_pred (`loss.rep=0`; `configs/base.py:SERIAL_PRED_CE`). `--config.teacher_workdir=<run>`
distills an existing teacher run instead. `:mode=parallel` trains teacher and student together, with the
family's loss weights (`configs/base.py:FAMILY_LOSS`: L_rep + L_pred + L_CE), as do the other modes.
Add `,cpu` to the argument for the 2-core CPU size. Paper figures: Table 1 in ../shared/PAPER.md.
"""
from fewframes_jax.configs import base


def get_config(arg=None):
  return base.headline("hrnn", k=30, arg=arg)
