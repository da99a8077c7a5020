"""Multi-teacher distillation (the paper's future work): an ensemble of trained teachers from different
families (NeXtVLAD + H-RNN by default) distilled into one k-frame H-RNN student, serial mode.

  python -m fewframes_jax.main --config=configs/nextvlad_k10.py:mode=teacher,cpu --workdir=runs/nextvlad_t
  python -m fewframes_jax.main --config=configs/hrnn.py:mode=teacher,cpu --workdir=runs/hrnn_t
  python -m fewframes_jax.main --config=configs/ensemble.py:cpu \
      --config.teacher_workdirs=runs/nextvlad_t,runs/hrnn_t --workdir=runs/ensemble_to_hrnn_k10

Each member is restored (best checkpoint, frozen) with the architecture saved in its own run, so the
`teacher` block of this config is not used to build them. L_pred matches the average of the members'
probabilities; L_rep matches each member's representation through its own learned projection (owned
by the student: one linear map onto the concatenated representations), summed over members
(`fewframes_jax/models/ensemble.py`). There is no single teacher classifier to share
(share_classifier=False). `student=lstm` and `k=...` in the argument as in the other configs.
The RESULTS.md row: `launch.paper_tables` section `cross` (the ensemble row).
`teacher_workdirs` defaults to the two runs of the commands above: an ensemble config never trains its own
teacher (serial mode with no teacher run trains one teacher first: `configs/cross_family.py`).
"""
from fewframes_jax.configs import base


def get_config(arg=None):
  # Defaults first: a later `key=value` in the argument overrides them.
  config = base.experiment("nextvlad", k=10, arg="mode=serial,student=hrnn," + (arg or ""))
  config.share_classifier = False
  config.teacher_workdirs = "runs/nextvlad_t,runs/hrnn_t"
  return config
