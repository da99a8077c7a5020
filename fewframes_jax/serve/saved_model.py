"""The TensorFlow SavedModel of one network: its serving signatures, around the JAX forward (jax2tf).

  serving_default(serialized string[B]) -> {video_id string[B], class_ids int32[B, K], scores f32[B, K]}
      The records are parsed, validated and decoded in the graph by `reader.RequestReader`, the training
      reader's own code, with the run's data settings (feature names and sizes, T, id key, release
      check); a student with a deterministic rule decodes only its k frames (`Selection.input_frames`), one
      with a learned selector of one stream decodes that stream of every frame and its k chosen frames.
      A bad record fails with `tf.errors.InvalidArgumentError` naming the request record and the reason
      (`fewframes_jax bad record: request record 3: bad_frame_size: ...`; a record that is not a
      SequenceExample: TF's parser error, `... example id: file <request>, record 3`). Labels are not
      read.
  dense(frames uint8[B, T, D], num_frames int32[B]) -> {class_ids, scores}
      For callers that already hold features; a student selects its k frames inside.

The JAX functions (`ranking.ranking_fn`) go through `jax2tf.convert` with a symbolic batch dimension,
native serialization for `ranking.PLATFORMS`, and the weights as `tf.Variable`s (the SavedModel's
variables/, not constants inside the StableHLO).

Why jax2tf rather than orbax-export: orbax-export (0.0.8, September 2025, the latest release) is a
wrapper whose `JaxModule` calls this same `jax2tf.convert` with `tf.Variable` weights; it would add a
dependency (and its own: dataclasses-json, jaxtyping, etils) without changing what is serialised, and it
predates JAX 0.10. jax2tf ships inside `jax` itself, so it moves in lockstep with the JAX we pin; the one
incompatibility with TensorFlow 2.21 (the StableHLO version, see `export.py`) is the same either way.
"""
from typing import Any, Dict

import jax
import numpy as np

from fewframes_jax.serve import ranking
from fewframes_jax import inference
from fewframes_jax.data import reader as reader_lib
from fewframes_jax.data import records


def tf_ranking_fn(network: inference.Network, variables, *, preselected: bool) -> Any:
  """The TF callable (frames u8[B, T', D], num_frames i32[B]) -> (class_ids, scores) of `ranking.ranking_fn`,
  its weights `variables` (the network's as `tf.Variable`s, or any arrays); T' = k when `preselected`."""
  from jax.experimental import jax2tf  # pylint: disable=g-import-not-at-top
  frames = network.frames_seen if preselected else network.max_frames
  fn = jax2tf.convert(ranking.ranking_fn(network.forward, preselected=preselected), with_gradient=False,
                      polymorphic_shapes=[None, f"(b, {frames}, {network.feature_dim})", "(b,)"],
                      native_serialization_platforms=ranking.PLATFORMS)
  return lambda frames_u8, num_frames: fn(variables, frames_u8, num_frames)


def build_module(network: inference.Network):
  """(a `tf.Module` holding the network's weights, {signature name: its concrete function}). Each
  function is traced once here (tf.saved_model.save would trace a tf.function attribute again, and
  every trace lowers the JAX function anew)."""
  tf = records.tensorflow()
  d = network.spec.data
  module = tf.Module()
  variables = jax.tree.map(lambda x: tf.Variable(np.asarray(x), trainable=False), network.variables)
  # The converted functions close over the plain dict; the module tracks the flat list (tf.Module would
  # wrap a dict attribute into a type that JAX's tree functions do not know).
  module._variables = tf.nest.flatten(variables)  # pylint: disable=protected-access
  dense = tf_ranking_fn(network, variables, preselected=False)
  # a learned selector of one stream is scored in the request reader from its parameters (constants)
  input_frames = network.forward.selection.input_frames(inference.split_selector(network.variables)[1])
  served = dense if input_frames is None else tf_ranking_fn(network, variables, preselected=True)
  reader = reader_lib.RequestReader(
      num_classes=d.num_classes, max_frames=d.max_frames, feature_names=tuple(d.feature_names),
      feature_sizes=tuple(d.feature_sizes), id_key=d.id_key, check_release=d.check_release,
      student_frames=input_frames)
  module._reader_counts = [reader.counter.counts, reader.counter.mismatches]  # pylint: disable=protected-access

  def serve(serialized):
    batch = reader.parse_request(serialized)
    lengths = batch["num_frames"] if input_frames is None else batch["num_frames_k"]
    class_ids, scores = served(batch["frames"], lengths)
    return {"video_id": batch["video_id"], "class_ids": class_ids, "scores": scores}

  def dense_signature(frames, num_frames):
    class_ids, scores = dense(frames, num_frames)
    return {"class_ids": class_ids, "scores": scores}

  specs = {
      "serving_default": (serve, [tf.TensorSpec([None], tf.string, name="serialized")]),
      "dense": (dense_signature, [tf.TensorSpec([None, network.max_frames, network.feature_dim], tf.uint8,
                                                name="frames"),
                                  tf.TensorSpec([None], tf.int32, name="num_frames")]),
  }
  return module, {name: tf.function(fn, input_signature=signature, autograph=False).get_concrete_function()
                  for name, (fn, signature) in specs.items()}


def signature_specs(signatures) -> Dict[str, Any]:
  """{signature: {"inputs": {name: [dtype, shape]}, "outputs": {...}}} of `build_module`'s concrete
  functions (None for a dimension of any size)."""
  spec = lambda t: [t.dtype.name, t.shape.as_list()]  # pylint: disable=unnecessary-lambda-assignment
  return {name: {"inputs": {t.name: spec(t) for t in fn.structured_input_signature[0]},
                 "outputs": {key: spec(t) for key, t in fn.structured_outputs.items()}}
          for name, fn in signatures.items()}


def save_saved_model(network: inference.Network, path: str) -> Dict[str, Any]:
  """Writes the network's SavedModel to `path`; returns its `signature_specs`."""
  tf = records.tensorflow()
  module, signatures = build_module(network)
  tf.saved_model.save(module, path, signatures=signatures)
  return signature_specs(signatures)
