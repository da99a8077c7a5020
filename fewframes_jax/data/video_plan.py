"""What a generated video shows and holds, shared by every generator (`synthetic.py`, `realistic.py`).

  VideoPlan            the labels, which frames carry each label's evidence and how strongly, which frames
                       are label-free (and of which kind), before any frame is drawn;
  Video                the drawn uint8 frames with their plan;
  class_probabilities  the Zipf-like class frequencies every generator draws labels from;
  log_uniform_int      a log-uniform integer (video, shot and segment lengths).
"""
import math
from typing import NamedTuple, Optional

import numpy as np


class VideoPlan(NamedTuple):
  """What a video shows, before any frame is drawn.

  length: L, the stored number of frames; labels: int64[n] (distinct, sorted; 1 <= n <= 4 here, up to 8
  in `realistic`); evidence: bool[n, L], the frames that hold label j's evidence; amplitude: f32[n, L],
  its strength (0 off the evidence frames; rgb, see `realistic` for audio); label_free: int8[L], the kind
  of label-free frame (`realistic.KINDS`; 0: a content frame, all of them in the `short` and `long`
  specs); channel: the video's recurring channel (-1: none).
  """
  length: int
  labels: np.ndarray
  evidence: np.ndarray
  amplitude: np.ndarray
  label_free: Optional[np.ndarray] = None
  channel: int = -1


class Video(NamedTuple):
  """One synthetic video: rgb uint8[L, rgb_size], audio uint8[L, audio_size], and its `VideoPlan`."""
  rgb: np.ndarray
  audio: np.ndarray
  plan: VideoPlan

  @property
  def labels(self) -> np.ndarray:
    return self.plan.labels


def class_probabilities(spec) -> np.ndarray:
  """f64[C]: the Zipf-like class frequencies p(c) ~ (c + 1)^-zipf_exponent (summing to 1) of a spec with
  `num_classes` and `zipf_exponent`."""
  p = np.arange(1, spec.num_classes + 1, dtype=np.float64) ** -spec.zipf_exponent
  return p / p.sum()


def log_uniform_int(rng: np.random.Generator, lo: int, hi: int) -> int:
  """An integer in [lo, hi], log-uniform."""
  return int(min(hi, max(lo, math.floor(math.exp(rng.uniform(math.log(lo), math.log(hi + 1)))))))
