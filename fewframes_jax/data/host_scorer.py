"""A learned frame selector's scorer on the host, in TensorFlow: the student-only input path of a scorer
that reads one stream (`sampling.learned.FrameScorer` with streams 'audio' or 'rgb').

Per video, the reader (`reader.RecordReader`, `yt8m.make_dataset(student_frames=(k, 'learned', scorer))`)
decodes that stream of every real frame, and here it is
  dequantized    as `quantization.dequantize` does it (`quantization.affine`: the same float32 values);
  scored         as `FrameScorer.__call__` scores it, from the scorer's parameters: per frame
                 z_t = x_t W_project + b, then relu([z_t, z_t - mean of z over the real frames] W_hidden + b)
                 W_score + b (with the far_from_mean prior, the frame's normalised distance to the video's
                 mean frame is one more hidden input and is added to the score); `PAD_SCORE` at padding;
  ranked         as `learned.learned_indices` ranks it (`content.top_k_in_time`): the k real frames of
                 highest score re-sorted by time, ties to the earlier frame, NaN after every number, slots
                 >= min(n, k) holding `PAD_INDEX`, a video of n <= k frames taking its frames 0..n-1;
and then every stream of only those k frames is decoded (`records.decode_picked_frames`). Bytes decoded
per video: n * width + min(n, k) * D instead of n * D (YouTube-8M's audio: 128 n + 1152 k, not 1152 n).

  HostScorer     the scorer's parameters (numpy) and the features it reads; `scores` and `indices` are
                 TF graph code over a chunk of videos.

Numerics: the scores are float32 matmuls, as on the device, so they agree to float32 rounding (a matmul's
sums may run in another order); the ranking of given scores is exact. The frames picked are the device's
unless two frames' scores lie within that rounding of each other; and on an accelerator whose default
matmul precision is below float32 (TF32 on recent NVIDIA GPUs, bfloat16 passes on TPUs) the device's own
scores carry that precision's error, which the host's do not.

TensorFlow is imported on first use (`records.tensorflow`), not by importing this module.
"""
from typing import Any, Mapping, Sequence, Tuple

import numpy as np

from fewframes_jax.data import quantization
from fewframes_jax.data import records
from fewframes_jax.sampling.rules import PAD_INDEX

LAYERS = ("project", "hidden", "score")  # the scorer's Dense layers, in order (`FrameScorer`)
PAD_SCORE = -1e9                          # = `sampling.learned.PAD_SCORE` (this module needs no Flax)
PRIORS = ("none", "far_from_mean")       # = `sampling.learned.PRIORS`
# Integer sort keys (`_sort_keys`): a float32's bits ordered as numbers, then NaN, then padding.
_MAGNITUDE = 0x7FFFFFFF
_INF_BITS = 0x7F800000
_NAN_KEY = -_INF_BITS - 1
_PAD_KEY = -2**31


class HostScorer:
  """A one-stream `FrameScorer` with its parameters, evaluated in TensorFlow on the host.

  Args:
    span: [start, stop) of the features the scorer reads in a frame of all features concatenated
      (`learned.stream_slice(feature_sizes, streams)`); the reader needs it to be one feature's bytes.
    params: the scorer's parameters (its 'selector' in a student's tree, arrays of any kind):
      {'project': {'kernel' [width, h], 'bias' [h]}, 'hidden': {'kernel' [2h, m], 'bias' [m]},
       'score': {'kernel' [m, 1], 'bias' [1]}}, width = stop - start.
  Raises ValueError naming the layer when a parameter is missing or of the wrong shape.
  """

  def __init__(self, span: Tuple[int, int], params: Mapping[str, Mapping[str, Any]], prior: str = "none"):
    if prior not in PRIORS:
      raise ValueError(f"HostScorer: prior={prior!r}: expected one of {PRIORS}")
    self.prior = prior
    start, stop = (int(s) for s in span)
    if not 0 <= start < stop:
      raise ValueError(f"HostScorer: span [{start}, {stop}) is empty")
    self.span = (start, stop)
    try:
      self.layers = tuple((np.asarray(params[name]["kernel"], np.float32),
                           np.asarray(params[name]["bias"], np.float32)) for name in LAYERS)
    except (KeyError, TypeError):
      raise ValueError(f"HostScorer: the scorer's parameters need the Dense layers {LAYERS}, each with "
                       f"'kernel' and 'bias'; got {_keys(params)}") from None
    inputs = self.width
    for name, (kernel, bias), units in zip(LAYERS, self.layers, (None, None, 1)):
      units = kernel.shape[-1] if units is None else units
      if kernel.shape != (inputs, units) or bias.shape != (units,):
        raise ValueError(f"HostScorer: layer {name!r} has kernel {kernel.shape} and bias {bias.shape}; "
                         f"expected ({inputs}, {units}) and ({units},)")
      # the hidden layer reads [z, z - mean] (and the prior's distance)
      inputs = 2 * units + (prior == "far_from_mean") if name == "project" else units

  @property
  def width(self) -> int:
    """Bytes (features) per frame of the stream scored: decoded for every frame of a video."""
    return self.span[1] - self.span[0]

  def feature_index(self, feature_sizes: Sequence[int]) -> int:
    """The feature (index into `feature_sizes`) whose bytes are the span; ValueError if none is."""
    ends = np.cumsum([0] + [int(s) for s in feature_sizes])
    for index, (start, stop) in enumerate(zip(ends[:-1], ends[1:])):
      if (start, stop) == self.span:
        return index
    raise ValueError(f"a host-scored learned selector must read exactly one feature: its span "
                     f"[{self.span[0]}, {self.span[1]}) is no feature of feature_sizes {tuple(feature_sizes)}")

  def scores(self, frames_u8, num_frames):
    """The scorer's scores, as `FrameScorer.__call__` on the dequantized frames of all features.

    Args:
      frames_u8: uint8[n, T, width], the scored stream of each video (rows past num_frames ignored).
      num_frames: i32[n] true lengths (<= T).
    Returns:
      f32[n, T], `PAD_SCORE` at t >= num_frames.
    """
    tf = records.tensorflow()
    real = tf.range(tf.shape(frames_u8)[1])[None, :] < num_frames[:, None]
    x = tf.where(real[..., None], quantization.affine(tf.cast(frames_u8, tf.float32)), 0.0)  # `dequantize`
    (project, hidden, score) = self.layers
    z = _dense(x, project)                                                          # [n, T, h]
    count = tf.cast(tf.maximum(num_frames, 1), tf.float32)[:, None, None]


    def video_mean(v):
      return tf.reduce_sum(tf.where(real[..., None], v, 0.0), axis=1, keepdims=True) / count

    features = [z, z - video_mean(z)]
    if self.prior == "far_from_mean":  # `learned.far_from_mean_prior`
      squares = tf.reduce_sum(tf.square(x - video_mean(x)), axis=-1)
      distance = tf.where(real, tf.sqrt(tf.maximum(squares, 1e-12)), 0.0)
      distance = distance / (tf.reduce_sum(distance, axis=1, keepdims=True) / count[:, :, 0] + 1e-6)
      features.append(distance[..., None])
    h = tf.nn.relu(_dense(tf.concat(features, axis=-1), hidden))
    score = _dense(h, score)[..., 0]
    if self.prior == "far_from_mean":
      score = distance + score
    return tf.where(real, score, PAD_SCORE)

  def indices(self, frames_u8, num_frames, k: int):
    """The k frames of highest score in time order, as `learned.learned_indices` picks them.

    Args:
      frames_u8, num_frames: as `scores`; k: frames per video, 1 <= k <= T.
    Returns:
      (indices i32[n, k]: strictly increasing real frames at slots j < num_frames_k, `PAD_INDEX` after;
       num_frames_k i32[n] = min(num_frames, k)).
    """
    return top_k_in_time(self.scores(frames_u8, num_frames), num_frames, k)


def top_k_in_time(scores, num_frames, k: int):
  """`content.top_k_in_time` in TensorFlow: scores f32[n, T], num_frames i32[n] -> (i32[n, k], i32[n])."""
  tf = records.tensorflow()
  # One stable descending sort of integer keys (`tf.math.top_k` puts the lower index first among equals).
  chosen = tf.sort(tf.math.top_k(_sort_keys(scores, num_frames), k=k).indices, axis=1)
  n = num_frames[:, None]
  j = tf.range(k)[None, :]
  chosen = tf.where(n <= k, j, chosen)  # `content._finish`
  num_k = tf.minimum(num_frames, k)
  return tf.where(j < num_k[:, None], chosen, PAD_INDEX), num_k


def _sort_keys(scores, num_frames):
  """i32[n, T] keys whose descending order is `jnp.argsort(-scores, stable=True)`'s order with padding
  last: a float32's sign and magnitude bits as an integer (-0.0 and 0.0 equal, as JAX's sort has them),
  then NaN (last among real frames in JAX's sort), then every padding frame."""
  tf = records.tensorflow()
  bits = tf.bitcast(scores, tf.int32)
  magnitude = tf.bitwise.bitwise_and(bits, _MAGNITUDE)
  keys = tf.where(bits < 0, -magnitude, magnitude)
  keys = tf.where(magnitude > _INF_BITS, _NAN_KEY, keys)
  real = tf.range(tf.shape(scores)[1])[None, :] < num_frames[:, None]
  return tf.where(real, keys, _PAD_KEY)


def _dense(x, layer):
  """flax's `nn.Dense`: x [..., d] @ kernel [d, u] + bias [u], in float32."""
  tf = records.tensorflow()
  kernel, bias = layer
  return tf.tensordot(x, kernel, axes=1) + bias


def _keys(params) -> str:
  try:
    return str({name: sorted(value) for name, value in params.items()})
  except (AttributeError, TypeError):
    return type(params).__name__
