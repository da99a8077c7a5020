"""A client of exported networks that knows nothing of this project: it imports only TensorFlow, JAX and
numpy (any import of `fewframes_jax` fails), as a serving system or a JAX user would.

  python tests/export_client.py <spec.json>

The spec (written by `test_export.py`):
  exports      {name: export folder}: each has saved_model/, dense.jax_export and dense_weights.npz
  records      a TFRecord file of serialized YouTube-8M SequenceExamples
  batch_sizes  request sizes; a request of size B holds records i % N, i < B (N records in the file)
  dense        an .npz with frames uint8[N, T, D] and num_frames int32[N] (the same videos, decoded)
  corrupt      {case: a file holding one bad serialized record}; each is sent after two good records
  out          where to write the results (.npz) and the error messages (<out>.json)
Results: `<name>/serve/<B>/{video_id, class_ids, scores}`, `<name>/dense/...` (the SavedModel's dense
signature), `<name>/jax/...` (the deserialized `jax.export` artifact); errors: {name: {case: message}}.
"""
import importlib.abc
import json
import sys


class _NoProject(importlib.abc.MetaPathFinder):
  """Makes `import fewframes_jax` fail, so that nothing here can lean on the project."""

  def find_spec(self, fullname, path=None, target=None):
    if fullname.split(".")[0] == "fewframes_jax":
      raise ImportError(f"export_client must not import {fullname}")
    return None


sys.meta_path.insert(0, _NoProject())

import jax  # noqa: E402  pylint: disable=wrong-import-position
import numpy as np  # noqa: E402  pylint: disable=wrong-import-position
import tensorflow as tf  # noqa: E402  pylint: disable=wrong-import-position


def serve(saved_model_dir, records, batch_sizes):
  """The serving signature on requests of each size: {f'serve/{B}/{output}': array}."""
  model = tf.saved_model.load(saved_model_dir)
  signature = model.signatures["serving_default"]
  out = {}
  for size in batch_sizes:
    request = tf.constant([records[i % len(records)] for i in range(size)])
    for key, value in signature(serialized=request).items():
      value = value.numpy()
      out[f"serve/{size}/{key}"] = value.astype(bytes) if value.dtype == object else value
  return model, out


def main(spec_path):
  with open(spec_path) as f:
    spec = json.load(f)
  records = [r.numpy() for r in tf.data.TFRecordDataset(spec["records"])]
  dense = np.load(spec["dense"])
  results, errors = {}, {}
  for name, folder in spec["exports"].items():
    model, served = serve(f"{folder}/saved_model", records, spec["batch_sizes"])
    results.update({f"{name}/{key}": value for key, value in served.items()})
    outputs = model.signatures["dense"](frames=tf.constant(dense["frames"]),
                                        num_frames=tf.constant(dense["num_frames"]))
    results.update({f"{name}/dense/{key}": value.numpy() for key, value in outputs.items()})
    with open(f"{folder}/dense.jax_export", "rb") as f:
      exported = jax.export.deserialize(bytearray(f.read()))
    stored = np.load(f"{folder}/dense_weights.npz")
    weights = [stored[name] for name in sorted(stored.files)]
    class_ids, scores = exported.call(weights, dense["frames"], dense["num_frames"])
    results[f"{name}/jax/class_ids"], results[f"{name}/jax/scores"] = np.asarray(class_ids), np.asarray(scores)
    errors[name] = {}
    for case, path in spec["corrupt"].items():
      with open(path, "rb") as f:
        bad = f.read()
      try:
        model.signatures["serving_default"](serialized=tf.constant(records[:2] + [bad]))
        errors[name][case] = None  # served an answer: the test fails on it
      except tf.errors.InvalidArgumentError as e:
        errors[name][case] = e.message
  assert not any(m.split(".")[0] == "fewframes_jax" for m in sys.modules)
  np.savez(spec["out"], **results)
  with open(spec["out"] + ".json", "w") as f:
    json.dump({"errors": errors, "modules": sorted(m for m in ("jax", "tensorflow") if m in sys.modules)}, f)


if __name__ == "__main__":
  main(sys.argv[1])
