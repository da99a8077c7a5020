"""A student's model at a frame budget: the same weights on fewer frame slots (the any-k student).

Frame-parallel families (LSTM/GRU, NetVLAD, NeXtVLAD) run the same model on k slots. H-RNN's blocks
follow k with a FIXED block length: the student is built for k_max with `hrnn_student_blocks(k_max)`
blocks of l = ceil(k_max / blocks) frames (k_max = 30: 5 blocks of 6), and at budget k its frames fill
ceil(min(n, k) / l) blocks of l, the last one partial (k = 10: 6 + 4; a fixed-k student at k = 10 has
2 blocks of 5). The lower LSTM's weights are shared by every block and the upper LSTM runs over the
non-empty blocks only, so the budget-k forward on l * ceil(k / l) slots equals the k_max-slot one.
"""
from typing import Tuple

from fewframes_jax.models.common import VideoModel


def hrnn_block_length(model: VideoModel, k_max: int) -> int:
  """Frames per H-RNN block of a student built for k_max frames (ceil(k_max / num_blocks))."""
  return -(-k_max // model.encoder.num_blocks)


def at_budget(model: VideoModel, k: int, k_max: int) -> Tuple[VideoModel, int]:
  """(the model for a budget-k forward, its number of frame slots).

  Frame-parallel families: the same model on k slots. H-RNN: the same weights with ceil(k / l) blocks
  of the k_max student's block length l, on that many whole blocks.
  """
  if not 1 <= k <= k_max:
    raise ValueError(f"budget k={k} must lie in [1, k_max={k_max}]")
  encoder = model.encoder
  if type(encoder).__name__ != "HRNN":
    return model, k
  block = hrnn_block_length(model, k_max)
  blocks = -(-k // block)
  return model.clone(encoder=encoder.clone(num_blocks=blocks)), blocks * block
