"""One student for every frame budget: the any-k student.

The paper trains one student per k. The any-k student is one set of weights trained for every budget
k in [k_min, k_max] at once (slimmable / once-for-all networks' "sandwich rule", with frames as the
width): each train step draws `per_step` budgets, always the smallest and the largest plus
`per_step - 2` uniformly random ones, and the student's loss (the same distillation loss as a fixed-k
student) is averaged over them. Its frames at budget k are the first k of one nested order per video
(`selection/nested.py`: coarse-to-fine as FrameExit reads a video, far-from-mean, or the ranking of the
student's own learned frame scorer, trained on the teacher's judgements as `selection/learned.py`'s
'rank' selector and applied once per step for every budget), re-sorted by time,
so the frames of a smaller budget are a subset of a larger one's (what early exit, `early_exit.py`,
needs).

Shapes stay static: every budget of a step is a [B, k_max, D] tensor whose slots past
min(n, k) are padding, and every model ignores padding frames (DESIGN.md's contract), so one compiled
step serves all budgets. At inference a budget-k forward is built at its own width (`at_budget`): k
slots for the frame-parallel families, whole blocks for H-RNN, so FLOPs follow the budget.

H-RNN's blocks follow k with a FIXED block length: the student is built for k_max with
`hrnn_student_blocks(k_max)` blocks of l = ceil(k_max / blocks) frames (k_max = 30: 5 blocks of 6), and
at budget k its frames fill ceil(min(n, k) / l) blocks of l, the last one partial (k = 10: 6 + 4; a
fixed-k student at k = 10 has 2 blocks of 5). The lower LSTM's weights are shared by every block and
the upper LSTM runs over the non-empty blocks only, so the budget-k forward on 6 * ceil(k / 6) slots
equals the k_max-slot one.

Batch norm (NetVLAD, NeXtVLAD) keeps one set of running statistics for every budget; slimmable
networks switch them per width. What that costs is measured, not assumed (RESULTS.md).
"""
import dataclasses
from typing import Optional, Tuple

import jax
import jax.numpy as jnp
import ml_collections

from fewframes_jax.models.common import VideoModel
from fewframes_jax.selection import nested


@dataclasses.dataclass(frozen=True)
class Budgets:
  """The budgets an any-k student is trained for: k in [k_min, k_max], `per_step` of them per step,
  the frames of each chosen by the nested `order`."""
  k_min: int
  k_max: int
  per_step: int
  order: str

  def __post_init__(self):
    if not 1 <= self.k_min <= self.k_max:
      raise ValueError(f"any-k budgets: need 1 <= k_min={self.k_min} <= k_max={self.k_max}")
    if self.per_step < 2:
      raise ValueError(f"any-k budgets: per_step={self.per_step}: the sandwich rule needs >= 2 "
                       "(the smallest and the largest budget)")
    if self.order not in nested.NESTED_ORDERS:
      raise ValueError(f"any-k budgets: order {self.order!r}: expected a nested order, one of {nested.NESTED_ORDERS}")

  def sample(self, rng: jax.Array) -> jax.Array:
    """i32[per_step]: k_min, k_max, then per_step - 2 budgets uniform in [k_min, k_max]."""
    drawn = jax.random.randint(rng, (self.per_step - 2,), self.k_min, self.k_max + 1, dtype=jnp.int32)
    return jnp.concatenate([jnp.array([self.k_min, self.k_max], jnp.int32), drawn])

  def contains(self, k: int) -> bool:
    return self.k_min <= k <= self.k_max


DEFAULT_PER_STEP = 4


def budgets_of(config: ml_collections.ConfigDict) -> Optional[Budgets]:
  """The run's any-k budgets (`config.student.k_min` set), or None for a fixed-k student (also a run
  saved before any-k students existed)."""
  s = config.student
  if s.get("k_min") is None:
    return None
  return Budgets(k_min=int(s.k_min), k_max=int(s.k), per_step=int(s.get("budgets_per_step") or DEFAULT_PER_STEP),
                 order=str(s.sampling))


def hrnn_block_length(model: VideoModel, k_max: int) -> int:
  """Frames per H-RNN block of a student built for k_max frames (ceil(k_max / num_blocks))."""
  return -(-k_max // model.encoder.num_blocks)


def at_budget(model: VideoModel, k: int, k_max: int) -> Tuple[VideoModel, int]:
  """(the model for a budget-k forward, its number of frame slots).

  Frame-parallel families (LSTM/GRU, NetVLAD, NeXtVLAD): the same model on k slots. H-RNN: the same
  weights with ceil(k / l) blocks of the k_max student's block length l, on that many whole blocks.
  """
  if not 1 <= k <= k_max:
    raise ValueError(f"budget k={k} must lie in [1, k_max={k_max}]")
  encoder = model.encoder
  if type(encoder).__name__ != "HRNN":
    return model, k
  block = hrnn_block_length(model, k_max)
  blocks = -(-k // block)
  return model.clone(encoder=encoder.clone(num_blocks=blocks)), blocks * block


__all__ = ["Budgets", "at_budget", "budgets_of", "hrnn_block_length"]
