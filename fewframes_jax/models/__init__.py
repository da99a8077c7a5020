"""Model registry: `build_model(network, ...)` maps a network's spec (`specs.NetworkSpec`: its family
`name` and settings) to a module.

Families (see `configs/base.py:model_config` for every field):
  hrnn      the paper's hierarchical LSTM + MoE head ([CODE] HierarchicalLstmModel)
  lstm, gru a plain multi-layer RNN over frames + MoE head ([G] LstmModel)
  netvlad   WILLOW's gated NetVLAD (NetVLADModelLF) + gated MoE with probability gating
  nextvlad  Lin et al.'s NeXtVLAD + SE gating + logistic head
"""
from typing import Any, Sequence

import dataclasses

import jax.numpy as jnp

from fewframes_jax.specs import NetworkSpec

from fewframes_jax.models.budget import at_budget, hrnn_block_length
from fewframes_jax.models.classifiers import Logistic, MoE
from fewframes_jax.models.common import ModelOutput, VideoModel, load_whitening
from fewframes_jax.models.netvlad import GatedNetVLAD
from fewframes_jax.models.nextvlad import NeXtVLADEncoder
from fewframes_jax.models.recurrent import HRNN, FrameRNN

MODEL_NAMES = ("hrnn", "lstm", "gru", "netvlad", "nextvlad")
RECURRENT = ("hrnn", "lstm", "gru")  # the families with per-step states (L_rep^I)
# The settings block of a network's spec (and config) that each family reads (`configs/base.py:model_config`).
FAMILY_FIELDS = {"hrnn": "hrnn", "lstm": "rnn", "gru": "rnn", "netvlad": "netvlad", "nextvlad": "nextvlad"}
DEFAULT_INPUT_NORM = {"hrnn": "l2", "lstm": "l2", "gru": "l2", "netvlad": "l2", "nextvlad": "none"}
DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}


def input_norm_of(network: NetworkSpec) -> str:
  """The input normalisation a network asks for (its family's default when unset)."""
  return network.input_norm or DEFAULT_INPUT_NORM[network.name]


def hrnn_student_blocks(k: int) -> int:
  """H-RNN blocks of a k-frame student: ceil(k / 6) (k=30 -> 5 blocks x 6 frames as [CODE]'s
  `num_inputs_L1=5`; k=10 -> 2 x 5; k=6 -> 1 x 6)."""
  return max(1, -(-int(k) // 6))


def network_at_k(network: NetworkSpec, k: int) -> NetworkSpec:
  """A student's network for k frames: H-RNN gets `hrnn_student_blocks(k)` blocks (the FLOPs table and
  the benchmarks build students at several k from one spec)."""
  return dataclasses.replace(network, hrnn=dataclasses.replace(network.hrnn, num_blocks=hrnn_student_blocks(k)))


def build_model(network: NetworkSpec, *, num_classes: int,
                feature_sizes: Sequence[int] = (1024, 128), dtype: Any = "float32",
                unroll: int = 0) -> VideoModel:
  """Builds the `VideoModel` of `network` (its family `network.name`, that family's settings).

  num_classes: C; feature_sizes: per-stream widths (rgb first), summing to the frame width D;
  dtype: compute dtype name or jnp dtype (params stay float32); unroll: >0 overrides the
  recurrent families' scan unrolling (a performance knob; FLOP counting does not need it, since
  `flops.scan_aware_flops` scales each scan body by its trip count).
  """
  name = network.name
  if name not in MODEL_NAMES:
    raise ValueError(f"model.name={name!r}: expected one of {MODEL_NAMES}")
  dtype = DTYPES[dtype] if isinstance(dtype, str) else dtype
  norm = input_norm_of(network)
  whitening = None
  if norm == "reverse_whitening":
    whitening = load_whitening(network.whitening_eigenvalues, feature_sizes[0], sum(feature_sizes))
  common = dict(input_norm=norm, whitening=whitening, dtype=dtype)
  if name == "hrnn":
    h = network.hrnn
    encoder = HRNN(num_blocks=h.num_blocks, cells=h.cells, layers=h.layers,
                   unroll=unroll or h.unroll, **common)
    head = MoE(num_classes, num_mixtures=h.moe_mixtures, dtype=dtype)
  elif name in ("lstm", "gru"):
    r = network.rnn
    encoder = FrameRNN(cell_type=name, cells=r.cells, layers=r.layers, unroll=unroll or r.unroll, **common)
    head = MoE(num_classes, num_mixtures=r.moe_mixtures, dtype=dtype)
  elif name == "netvlad":
    n = network.netvlad
    encoder = GatedNetVLAD(feature_sizes=tuple(feature_sizes), cluster_size=n.cluster_size,
                           hidden_size=n.hidden_size, random_frames=n.random_frames,
                           num_random_frames=n.num_random_frames, **common)
    head = MoE(num_classes, num_mixtures=n.moe_mixtures, prob_gating=n.prob_gating, dtype=dtype)
  else:
    n = network.nextvlad
    encoder = NeXtVLADEncoder(feature_sizes=tuple(feature_sizes), cluster_size=n.cluster_size,
                              hidden_size=n.hidden_size, groups=n.groups, expansion=n.expansion,
                              gating_reduction=n.gating_reduction, dropout=n.dropout, **common)
    head = Logistic(num_classes, dtype=dtype)
  return VideoModel(encoder=encoder, head=head)


__all__ = ["DTYPES", "at_budget", "hrnn_block_length", "FAMILY_FIELDS", "MODEL_NAMES", "RECURRENT", "ModelOutput", "VideoModel", "build_model", "hrnn_student_blocks",
           "input_norm_of", "network_at_k"]
