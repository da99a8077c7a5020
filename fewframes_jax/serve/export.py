"""Export one trained network (teacher or student) for serving outside this project.

  python -m fewframes_jax.main --config=configs/nextvlad_k10.py:cpu --workdir=runs/nextvlad_k10_cpu \\
      --mode=export [--network=teacher] [--best | --step=N] [--output=<folder>]

writes into the output folder (default `<workdir>/export/<network>`):
  saved_model/       a TensorFlow SavedModel (`saved_model.py`) with two signatures:
                       serving_default  serialized string[B] (YouTube-8M SequenceExamples, the dataset's own
                                        bytes) -> video_id string[B], class_ids int32[B, K], scores f32[B, K]
                       dense            frames uint8[B, T, D], num_frames int32[B] -> class_ids, scores
                     Inside `serving_default` the records are parsed and validated as the training reader
                     does, and only the frames the network sees are decoded (k for a student with a
                     deterministic rule). K = min(20, C), sorted by descending score.
  dense.jax_export   the dense function as a serialized `jax.export.Exported` (StableHLO, batch dimension
                     `b` symbolic), for JAX users with nothing of this project installed:
                     `jax.export.deserialize(bytes).call(weights, frames, num_frames)`, where
  dense_weights.npz  holds `weights`, the list of the network's arrays: `[w[name] for name in
                     sorted(w.files)]` of `w = np.load(...)` (`weight_list`). The weights are an argument,
                     not constants inside the StableHLO: with constants, a paper-size NeXtVLAD student's
                     artifact was 362 MB instead of 38 KB, took 3.8 GB to load and compile instead of 0.7 GB,
                     and ran 2x slower on a CPU (XLA compiles the constants into the program).
  export_info.json   what was exported (`export_info`): family, frames seen, classes, data schema, FLOPs
                     per video (`inference.Forward.cost`), checkpoint step, versions, signatures.

Every exported function is `ranking_fn`: the project's eval forward (`inference.Forward.apply`, so a
'random' student selects its frames inside it, from `inference.eval_key(0)` as `Network.probabilities`)
followed by `top_classes`. Both artifacts are lowered for `PLATFORMS` (CPU and CUDA), so one export serves
on either kind of host.

StableHLO versions: JAX 0.10 serialises StableHLO 1.15, while TensorFlow 2.21's `XlaCallModule` reads up
to 1.13.7. Anything that lowers to `stablehlo.composite` (e.g. `jax.lax.top_k`) then fails to load in
TensorFlow ("unregistered operation 'vhlo.composite_v2'"), so `top_classes` ranks without it.
Why jax2tf and not orbax-export: see `saved_model.py`.
"""
import json
import os
from typing import Any, Dict, Optional, Tuple

import jax
import jax.numpy as jnp
import numpy as np

from fewframes_jax import errors
from fewframes_jax import inference
from fewframes_jax.serve import ranking

SAVED_MODEL_DIR = "saved_model"
JAX_EXPORT_FILE = "dense.jax_export"
JAX_WEIGHTS_FILE = "dense_weights.npz"
INFO_FILE = "export_info.json"
FORMAT_VERSION = 1
ID_KEY_CONVENTION = {
    "auto": "per record: context key `id` (2018+ releases) if present, else `video_id` (2017 release)",
    "id": "context key `id` (2018+ releases)",
    "video_id": "context key `video_id` (2017 release)",
}


def export_dense(network: inference.Network) -> Tuple[jax.export.Exported, Dict[str, np.ndarray]]:
  """The dense function `ranking_fn(network.forward)` over all T frames for a symbolic batch `b`,
  (weights, u8[b, T, D], i32[b]) -> (i32[b, K], f32[b, K]), and its weights ({name: array}, `weight_list`)."""
  named, unflatten = ranking.weight_list(network.variables)
  rank = ranking.ranking_fn(network.forward)
  fn = jax.jit(lambda weights, frames_u8, num_frames: rank(unflatten(weights), frames_u8, num_frames))
  b, = jax.export.symbolic_shape("b")
  args = ([jax.ShapeDtypeStruct(w.shape, w.dtype) for _, w in sorted(named.items())],
          jax.ShapeDtypeStruct((b, network.max_frames, network.feature_dim), jnp.uint8),
          jax.ShapeDtypeStruct((b,), jnp.int32))
  return jax.export.export(fn, platforms=ranking.PLATFORMS)(*args), named


def export_info(network: inference.Network, *, workdir: str = "", signatures: Optional[Dict] = None
                ) -> Dict[str, Any]:
  """What an export holds, as JSON-ready values (written as `export_info.json`)."""
  spec, selection = network.spec, network.forward.selection
  d = spec.data
  top_k = min(ranking.TOP_K, int(d.num_classes))
  flops, params = network.forward.cost(max_frames=network.max_frames, feature_dim=network.feature_dim)
  return {
      "format_version": FORMAT_VERSION,
      "network": network.which,
      "family": getattr(spec, network.which).name,
      "frames_seen": network.frames_seen,
      "k": selection.k,
      "selection": "all frames" if selection.all_frames else selection.method,
      "num_classes": int(d.num_classes),
      "top_k": top_k,
      "max_frames": network.max_frames,
      "feature_names": list(d.feature_names),
      "feature_sizes": [int(s) for s in d.feature_sizes],
      "id_key": str(d.id_key),
      "id_key_convention": ID_KEY_CONVENTION[str(d.id_key)],
      "check_release": bool(d.check_release),
      "flops_per_video": float(flops),
      "params": int(params),
      "dtype": spec.dtype,
      "checkpoint_step": network.step,
      "workdir": os.path.abspath(workdir) if workdir else "",
      "versions": _versions(),
      "platforms": list(ranking.PLATFORMS),
      "saved_model": SAVED_MODEL_DIR,
      "signatures": signatures or {},
      "jax_export": {"file": JAX_EXPORT_FILE, "weights": JAX_WEIGHTS_FILE,
                     "call": "exported.call(weights, frames, num_frames)",
                     "inputs": {"weights": "[w[name] for name in sorted(w.files)], w = np.load(weights file)",
                                "frames": ["uint8", ["b", network.max_frames, network.feature_dim]],
                                "num_frames": ["int32", ["b"]]},
                     "outputs": {"class_ids": ["int32", ["b", top_k]], "scores": ["float32", ["b", top_k]]}},
  }


def _versions() -> Dict[str, str]:
  import importlib.metadata  # pylint: disable=g-import-not-at-top
  out = {"jax": jax.__version__}
  for package in ("jaxlib", "flax", "tensorflow", "tensorflow-cpu", "fewframes_jax"):
    try:
      out[package] = importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
      pass
  return out


def export_network(network: inference.Network, output_dir: str, *, workdir: str = "") -> Dict[str, Any]:
  """Writes the SavedModel, the `jax.export` artifact and export_info.json of `network` into
  `output_dir` (created; files there are replaced). Returns the export info."""
  from fewframes_jax.serve import saved_model  # pylint: disable=g-import-not-at-top  (TensorFlow)
  os.makedirs(output_dir, exist_ok=True)
  signatures = saved_model.save_saved_model(network, os.path.join(output_dir, SAVED_MODEL_DIR))
  exported, weights = export_dense(network)
  with open(os.path.join(output_dir, JAX_EXPORT_FILE), "wb") as f:
    f.write(exported.serialize())
  np.savez(os.path.join(output_dir, JAX_WEIGHTS_FILE), **weights)
  info = export_info(network, workdir=workdir, signatures=signatures)
  with open(os.path.join(output_dir, INFO_FILE), "w") as f:
    json.dump(info, f, indent=1)
  return info


def export_workdir(workdir: str, output_dir: str, *, network: str = "student", best: bool = False,
                   step: Optional[int] = None) -> Dict[str, Any]:
  """Exports the `network` of a checkpoint of `workdir` (the latest; `best`: best eval GAP; `step`).
  Raises FileNotFoundError (no such checkpoint) or errors.UserError (the run has no such network)."""
  from fewframes_jax import checkpoint  # pylint: disable=g-import-not-at-top
  restored = checkpoint.restore(workdir, step=step, best=best)
  try:
    net = restored.network(network)
  except ValueError as e:
    raise errors.UserError(f"--network={network}: {e}") from None
  return export_network(net, output_dir, workdir=workdir)

