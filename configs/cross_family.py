"""Cross-family distillation (the paper's future work): a NeXtVLAD teacher, an H-RNN (or LSTM) student.

  python -m fewframes_jax.main --config=configs/cross_family.py:cpu --workdir=runs/nextvlad_to_hrnn_k10
  python -m fewframes_jax.main --config=configs/cross_family.py:student=lstm,cpu ...    # an LSTM student
  python -m fewframes_jax.main --config=configs/cross_family.py:mode=teacher,cpu --workdir=runs/nextvlad_t
  python -m fewframes_jax.main --config=configs/cross_family.py:cpu \
      --config.teacher_workdir=runs/nextvlad_t --workdir=runs/nextvlad_t_to_hrnn_k10   # from a trained teacher

Serial mode by default (a frozen, trained teacher: the paper's best mode). Without `teacher_workdir` the
run trains the NeXtVLAD teacher first, in `<workdir>/teacher`, then the k = 10 student against it. The
representations differ in size (NeXtVLAD's 2048-d hidden activation vs H-RNN's 1024-d state), so L_rep
goes through a learned projection owned and trained by the student, and each network keeps its own
classifier (share_classifier=False). Loss weights: the student family's (`configs.base.FAMILY_LOSS`).
The RESULTS.md row: `launch.paper_tables` section `cross`.
"""
from fewframes_jax.configs import base


def get_config(arg=None):
  # Defaults first: a later `key=value` in the argument overrides them.
  return base.experiment("nextvlad", k=10, arg="mode=serial,student=hrnn," + (arg or ""))
