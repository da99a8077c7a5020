"""Recurrent encoders: a plain multi-layer LSTM/GRU over frames, and the paper's hierarchical H-RNN.

* `FrameRNN`: the YouTube-8M starter's `LstmModel` ([G]; `MultiRNNCell` of `BasicLSTMCell`s run by
  `dynamic_rnn(sequence_length=num_frames)`), or the same stack of GRU cells.
* `HRNN`: the paper's hierarchical LSTM ([PDF §3.1], [CODE] `HierarchicalLstmModel`): a lower LSTM,
  shared by every block of frames, encodes each block; its final states are the steps of an upper LSTM.

Both run over each sequence's TRUE length only: the scan carry is frozen once a sequence has ended,
so the final carry is the state at the true last step, and padding frames never reach any output.

Cells (one layer, hidden size H, input x_t, previous state h, c):
  LSTM, TF `BasicLSTMCell(forget_bias=1.0)`. Gate order in the kernels is TF's [i, j, f, o]:
    i, j, f, o = x_t W_x + b + h W_h
    c' = c * sigmoid(f + 1.0) + sigmoid(i) * tanh(j);   h' = tanh(c') * sigmoid(o)
  GRU, "reset-after" form (cuDNN / Keras `reset_after=True` / flax `GRUCell`), gate order [r, z, n]:
    r = sigmoid(x W_xr + b_r + h W_hr);   z = sigmoid(x W_xz + b_z + h W_hz)
    n = tanh(x W_xn + b_n + r * (h W_hn + b_hn));   h' = z * h + (1 - z) * n
  It differs from TF1's `GRUCell` (reset applied before the matmul) so that each step needs one
  `h @ W_h` matmul; like TF1's cell, the r/z biases start at 1.0.

TF keeps one kernel [D_in + H, G*H] per cell; we keep W_x [D_in, G*H] and W_h [H, G*H] (same
parameter count, and the same glorot-uniform limit computed from the combined shape) so that the
input projection `x W_x` of every step of a layer is ONE big matmul outside the scan and the scan
body only does `h @ W_h`.

Precision: matmuls run in the compute `dtype` (the recurrent one accumulates in float32); gates, the
cell state c and the hidden state h carried between steps stay float32. Per-step outputs (the next
layer's input and `intermediates`) are in the compute dtype.
"""
import math
from typing import Any, List, Optional, Sequence, Tuple

import flax.linen as nn
import jax
import jax.numpy as jnp

from fewframes_jax.models.common import einsum_f32, normalize_frames

Array = jax.Array

CELL_TYPES = ("lstm", "gru")
_NUM_GATES = {"lstm": 4, "gru": 3}
LSTM_FORGET_BIAS = 1.0  # TF BasicLSTMCell's default, added to the forget gate at every step


def _combined_glorot_uniform(fan_in: int, fan_out: int):
  """glorot_uniform with the fans of TF's combined cell kernel [D_in + H, G*H] (TF1's default
  variable initializer), for either of our split kernels."""
  limit = math.sqrt(6.0 / (fan_in + fan_out))

  def init(key, shape, dtype=jnp.float32):
    return jax.random.uniform(key, shape, dtype, -limit, limit)

  return init


def _gru_bias_init(key, shape, dtype=jnp.float32):
  """[r, z, n] biases: 1.0 for the r and z gates (TF1 GRUCell's gate bias), 0 for the candidate."""
  del key
  h_size = shape[0] // 3
  return jnp.concatenate([jnp.ones((2 * h_size,), dtype), jnp.zeros((h_size,), dtype)])


def _lstm_step(carry: Tuple[Array, Array], gates: Array) -> Tuple[Array, Array]:
  """TF BasicLSTMCell; gates f32[N, 4H] = x W_x + b + h W_h in order [i, j, f, o]."""
  c, _ = carry
  i, j, f, o = jnp.split(gates, 4, axis=-1)
  c = c * jax.nn.sigmoid(f + LSTM_FORGET_BIAS) + jax.nn.sigmoid(i) * jnp.tanh(j)
  return c, jnp.tanh(c) * jax.nn.sigmoid(o)


def _gru_step(carry: Tuple[Array], xp: Array, rec: Array, recurrent_bias: Array) -> Tuple[Array]:
  """Reset-after GRU; xp = x W_x + b and rec = h W_h, f32[N, 3H] in order [r, z, n]."""
  (h,) = carry
  x_r, x_z, x_n = jnp.split(xp, 3, axis=-1)
  h_r, h_z, h_n = jnp.split(rec, 3, axis=-1)
  r = jax.nn.sigmoid(x_r + h_r)
  z = jax.nn.sigmoid(x_z + h_z)
  n = jnp.tanh(x_n + r * (h_n + recurrent_bias))
  return (z * h + (1.0 - z) * n,)


class RNNLayer(nn.Module):
  """One LSTM or GRU layer run over each sequence's true length.

  Params: `input_kernel` f32[D_in, G*H], `bias` f32[G*H], `recurrent_kernel` f32[H, G*H], and for
  the GRU `recurrent_bias` f32[H] (G = 4 for LSTM, 3 for GRU).
  """
  cell_type: str
  cells: int
  unroll: int = 1
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: Array, lengths: Array, *, time_major: bool = False
               ) -> Tuple[Tuple[Array, ...], Array]:
    """x: [N, L, D_in] ([L, N, D_in] if `time_major`); lengths: i32[N] (0..L).

    Returns (carry, outputs): carry = (c f32[N, H], h f32[N, H]) for LSTM or (h f32[N, H],) for GRU,
    the state after step lengths[n] - 1 (the zero initial state when lengths[n] == 0);
    outputs = per-step h [N, L, H] ([L, N, H] if `time_major`) in the compute dtype, zeros at
    t >= lengths[n].
    """
    if self.cell_type not in CELL_TYPES:
      raise ValueError(f"cell_type={self.cell_type!r}: expected one of {CELL_TYPES}")
    if not time_major:
      x = jnp.swapaxes(x, 0, 1)
    steps, n, d_in = x.shape
    h_size, g = self.cells, _NUM_GATES[self.cell_type]
    kernel_init = _combined_glorot_uniform(d_in + h_size, g * h_size)
    w_x = self.param("input_kernel", kernel_init, (d_in, g * h_size))
    w_h = self.param("recurrent_kernel", kernel_init, (h_size, g * h_size))
    if self.cell_type == "lstm":
      bias = self.param("bias", nn.initializers.zeros, (g * h_size,))
      recurrent_bias = None
      carry = (jnp.zeros((n, h_size), jnp.float32), jnp.zeros((n, h_size), jnp.float32))
    else:
      bias = self.param("bias", _gru_bias_init, (g * h_size,))
      recurrent_bias = self.param("recurrent_bias", nn.initializers.zeros, (h_size,))
      carry = (jnp.zeros((n, h_size), jnp.float32),)

    # The input projection of every step at once, time-major: [L, N, G*H]. The input is made
    # time-major first (it is narrower than the projection): projecting batch-major input straight to
    # time-major output made XLA transpose and copy the [L, N, G*H] projection before the loop.
    xp = jnp.einsum("lnd,dg->lng", x.astype(self.dtype), w_x.astype(self.dtype))
    xp = xp + bias.astype(self.dtype)
    valid = jnp.arange(steps)[:, None] < lengths[None, :]  # bool[L, N]
    w_h = w_h.astype(self.dtype)
    is_lstm = self.cell_type == "lstm"

    def step(carry, inputs):
      xp_t, valid_t = inputs
      rec = einsum_f32("nh,hg->ng", carry[-1].astype(self.dtype), w_h)
      xp_t = xp_t.astype(jnp.float32)
      if is_lstm:
        new = _lstm_step(carry, xp_t + rec)
      else:
        new = _gru_step(carry, xp_t, rec, recurrent_bias)
      keep = valid_t[:, None]
      carry = tuple(jnp.where(keep, a, b) for a, b in zip(new, carry))
      return carry, jnp.where(keep, new[-1], 0.0).astype(self.dtype)

    carry, outputs = jax.lax.scan(step, carry, (xp, valid), unroll=self.unroll)
    return carry, outputs if time_major else jnp.swapaxes(outputs, 0, 1)


class StackedRNN(nn.Module):
  """`layers` RNN layers (`layer_0` ... ), each feeding its per-step outputs to the next
  (TF `MultiRNNCell`); submodule i is `RNNLayer` named `layer_{i}`."""
  cell_type: str
  cells: int
  layers: int
  unroll: int = 1
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: Array, lengths: Array) -> Tuple[List[Tuple[Array, ...]], Array]:
    """x: [N, L, D_in]; lengths: i32[N].

    Returns (carries, outputs): one final carry per layer (see `RNNLayer`), bottom first, and the
    top layer's per-step h [N, L, H] (zeros at t >= lengths[n]).
    """
    if self.layers < 1:
      raise ValueError(f"layers={self.layers}: need at least one RNN layer")
    carries = []
    x = jnp.swapaxes(x, 0, 1)  # time-major between layers: no transposes per layer
    for i in range(self.layers):
      carry, x = RNNLayer(self.cell_type, self.cells, unroll=self.unroll, dtype=self.dtype,
                          name=f"layer_{i}")(x, lengths, time_major=True)
      carries.append(carry)
    return carries, jnp.swapaxes(x, 0, 1)


def concat_states(carries: Sequence[Tuple[Array, ...]]) -> Array:
  """TF's `state_is_tuple=False` state of a `MultiRNNCell` of LSTMs: [c1, h1, c2, h2, ...] f32[N, 2*layers*H]."""
  return jnp.concatenate([s for carry in carries for s in carry], axis=-1)


def _normalize(frames: Array, num_frames: Array, input_norm: str, whitening) -> Array:
  scale, offset = whitening if whitening is not None else (None, None)
  return normalize_frames(frames, num_frames, mode=input_norm, whitening_scale=scale,
                          whitening_offset=offset)


class FrameRNN(nn.Module):
  """A plain multi-layer LSTM or GRU over the frames ([G] `LstmModel`).

  Representation E: the TOP layer's h at each video's true last frame, f32[B, cells] ([G]'s
  `state[-1].h`; a zero-frame video gives zeros). Intermediates: the top layer's per-frame h,
  [B, T, cells] in the compute dtype, zeros at t >= num_frames.
  Params: `rnn/layer_{i}/...` (see `RNNLayer`).
  """
  cell_type: str = "lstm"
  cells: int = 1024
  layers: int = 2
  unroll: int = 1
  input_norm: str = "l2"
  whitening: Optional[Tuple[Any, Any]] = None
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, frames: Array, num_frames: Array, *, train: bool) -> Tuple[Array, Array]:
    """frames: f32[B, T, D]; num_frames: i32[B] -> (f32[B, cells], [B, T, cells])."""
    del train  # no dropout or batch norm
    if self.cell_type not in CELL_TYPES:
      raise ValueError(f"model.name={self.cell_type!r}: FrameRNN cell_type must be one of {CELL_TYPES}")
    x = _normalize(frames, num_frames, self.input_norm, self.whitening).astype(self.dtype)
    carries, outputs = StackedRNN(self.cell_type, self.cells, self.layers, unroll=self.unroll,
                                  dtype=self.dtype, name="rnn")(x, num_frames)
    return carries[-1][-1], outputs


class HRNN(nn.Module):
  """The paper's hierarchical LSTM ([PDF §3.1]; [CODE] `HierarchicalLstmModel`).

  The T frames are cut into `num_blocks` consecutive blocks of l = ceil(T / num_blocks) frames (T is
  zero-padded up to num_blocks * l). A `layers`-layer LSTM (`lower`, ONE set of weights shared by
  every block) encodes block b over its valid frames, clip(num_frames - b*l, 0, l), starting from the
  zero state; its final state [c1, h1, c2, h2] (2*layers*cells) is step b of a `layers`-layer LSTM
  (`upper`) that runs over the ceil(num_frames / l) non-empty blocks. Teacher (config default):
  T=300, 20 blocks x 15 frames; the [CODE] student: k=30, 5 blocks x 6 frames.

  Representation E: the upper LSTM's final state [c1, h1, c2, h2], f32[B, 2*layers*cells]
  (4096-d at the paper's size), as in [CODE]. A zero-frame video gives the zero state.

  Intermediates: the lower LSTM's top-layer h at every frame, in frame order, [B, T, cells] in the
  compute dtype, zeros at t >= num_frames. The paper's L_rep^I matches "the lower-level RNN states
  at the matched frames" (this is not in [CODE]); the trainer gathers the teacher's rows at the frame
  indices the student saw. Note that the lower state restarts from zero at each block boundary, so a
  teacher and a student state at the same frame summarise different (block-local) histories.

  The per-block final states (the upper LSTM's inputs, f32[B, num_blocks, 2*layers*cells]) are
  also sown as `intermediates/block_states` (read them with `mutable=["intermediates"]`).
  """
  num_blocks: int = 20
  cells: int = 1024
  layers: int = 2
  unroll: int = 1
  input_norm: str = "l2"
  whitening: Optional[Tuple[Any, Any]] = None
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, frames: Array, num_frames: Array, *, train: bool) -> Tuple[Array, Array]:
    """frames: f32[B, T, D]; num_frames: i32[B] -> (f32[B, 2*layers*cells], [B, T, cells])."""
    del train  # no dropout or batch norm
    batch, steps, dim = frames.shape
    nb = self.num_blocks
    if not 1 <= nb <= steps:
      raise ValueError(f"model.hrnn.num_blocks={nb}: must be in [1, T={steps}] (T = frames per video "
                       "the H-RNN is given: data.max_frames for the teacher, student.k for the student)")
    block_len = -(-steps // nb)
    x = _normalize(frames, num_frames, self.input_norm, self.whitening).astype(self.dtype)
    x = jnp.pad(x, ((0, 0), (0, nb * block_len - steps), (0, 0)))
    num_frames = jnp.clip(num_frames.astype(jnp.int32), 0, steps)

    # Lower level: every block of every video at once, [B * nb, l, D].
    block_lengths = jnp.clip(num_frames[:, None] - block_len * jnp.arange(nb)[None, :], 0, block_len)
    lower_carries, lower_outputs = StackedRNN(
        "lstm", self.cells, self.layers, unroll=self.unroll, dtype=self.dtype, name="lower")(
            x.reshape(batch * nb, block_len, dim), block_lengths.reshape(batch * nb))
    block_states = concat_states(lower_carries).reshape(batch, nb, -1)
    self.sow("intermediates", "block_states", block_states)

    # Upper level: one step per non-empty block.
    num_blocks_used = (num_frames + block_len - 1) // block_len
    upper_carries, _ = StackedRNN(
        "lstm", self.cells, self.layers, unroll=self.unroll, dtype=self.dtype, name="upper")(
            block_states, num_blocks_used)
    representation = concat_states(upper_carries)
    intermediates = lower_outputs.reshape(batch, nb * block_len, self.cells)[:, :steps]
    return representation, intermediates


__all__ = ["CELL_TYPES", "FrameRNN", "HRNN", "RNNLayer", "StackedRNN", "concat_states"]
