"""The training record stream: a deterministic order of records that a resumed run can seek into.

A preempted run must restart where it stopped without reading the epoch again (on the 3.9M-video 2018
train set a restart late in an epoch would otherwise re-read and re-parse millions of records). The
stream is therefore cut into *rounds* whose order depends only on the seed:

  epoch e     the files (this process's shard) in an order drawn from (seed, e);
  round r     files [r * c, (r + 1) * c) of that order (c = `cycle_length`), their records interleaved
              one at a time and shuffled in a buffer seeded by (seed, e, r);
  index i     the i-th record of the round, in that shuffled order.

Every record carries its `Position(epoch, round, index)`, and so does every row of a training batch
(`batch["position"]`, host side only). The position after a batch is its last row's, plus one record:
a run saves it with its checkpoint, and `training_records(..., start=position)` starts there. Whole
rounds before it are skipped without opening their files (file-level skipping); inside the round, the
records before `index` are read again but not parsed (at most `c` files' bytes; parsing, not reading,
is what costs: about 0.5 ms of CPU per full-length video). The resumed stream is the uninterrupted one
from that record on, so a resumed run trains on the same batches, bit for bit. Bad records that the
reader skips are skipped again in the same places.

Compared with one continuous interleave and one shuffle buffer over the whole epoch, records mix
across the `c` files of a round only (the buffer drains at a round's end); with a buffer of thousands
of records and files of about a thousand videos each, this changes little.
"""
from typing import NamedTuple

import numpy as np

from fewframes_jax.data import records

SEED_STRIDE = 1_000_003  # mixes (seed, epoch, round) into one int64 shuffle seed


class Position(NamedTuple):
  """The next record of a training stream: records [0, index) of round `round` of epoch `epoch` (and
  every earlier round) are consumed."""
  epoch: int = 0
  round: int = 0
  index: int = 0

  @classmethod
  def after(cls, row_position) -> "Position":
    """The position after the record at `row_position` (i64[3]: a batch row's `position`)."""
    epoch, round_, index = (int(v) for v in np.asarray(row_position).reshape(3))
    return cls(epoch, round_, index + 1)


def num_rounds(num_files: int, cycle_length: int) -> int:
  """Rounds per epoch: ceil(files / cycle_length)."""
  return -(-num_files // max(1, min(cycle_length, num_files)))


def training_records(reader, num_files: int, *, seed: int, shuffle_buffer: int, cycle_length: int,
                     repeat: bool = True, start: Position = Position()):
  """The training stream from `start`: a `tf.data.Dataset` of single records
  (file_index i64, record_index i64, serialized string, position i64[3]).

  reader: a `reader.RecordReader` over this process's files; num_files: their number; seed: this
  process's stream seed; shuffle_buffer: records per round's shuffle buffer (<= 1: no shuffle);
  cycle_length: files per round; repeat: epochs forever (False: one epoch, `start.epoch`).
  """
  tf = records.tensorflow()
  c = max(1, min(cycle_length, num_files))
  rounds_per_epoch = num_rounds(num_files, c)
  epochs = tf.data.Dataset.range(start.epoch, np.iinfo(np.int64).max if repeat else start.epoch + 1)

  def rounds_of(epoch):
    order = tf.argsort(tf.random.stateless_uniform([num_files], seed=tf.stack([tf.constant(seed, tf.int64),
                                                                                epoch])))
    return tf.data.Dataset.range(rounds_per_epoch).map(
        lambda r: (epoch, r, order[r * c:(r + 1) * c]))

  def round_records(epoch, round_, file_ids):
    stream = tf.data.Dataset.from_tensor_slices(tf.cast(file_ids, tf.int64)).interleave(
        records.graph_fn(lambda i: reader.file_chunks(i).unbatch()), cycle_length=c, block_length=1,
        num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    if shuffle_buffer > 1:
      round_seed = (tf.constant(seed, tf.int64) * SEED_STRIDE + epoch) * SEED_STRIDE + round_
      stream = stream.shuffle(shuffle_buffer, seed=round_seed, reshuffle_each_iteration=False)
    return stream.enumerate().map(records.graph_fn(
        lambda i, record: (*record, tf.stack([epoch, round_, i]))))

  rounds = epochs.flat_map(records.graph_fn(rounds_of)).skip(start.round)
  return rounds.flat_map(records.graph_fn(round_records)).skip(start.index)
