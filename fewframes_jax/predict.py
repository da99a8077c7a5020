"""Inference from a trained workdir over TFRecords: eval metrics, and the Kaggle CSV.

CSV format (the YouTube-8M starter's inference.py and Kaggle): header `VideoId,LabelConfidencePairs`,
then one line per video: `<id>,<label> <score> <label> <score> ...` with the top 20 classes sorted by
descending score (`%g`-style scores).

The data pattern is the command-line config's `data.eval_pattern` when given, else the trained run's.
The student (with a deterministic sampling method) is fed by the student-only input path: each record is
parsed but only its k frames are decoded and shipped (`yt8m.make_dataset(student_frames=...)`).
"""
from typing import Dict, Iterator, Tuple

import jax
import ml_collections
import numpy as np

from fewframes_jax import checkpoint as ckpt_lib
from fewframes_jax import evaluate as eval_lib
from fewframes_jax import metrics as metrics_lib
from fewframes_jax import sampling
from fewframes_jax import throughput
from fewframes_jax.data.quantization import dequantize

TOP_K = 20


def _data_config(run_config, cli_config) -> ml_collections.ConfigDict:
  d = ml_collections.ConfigDict(run_config.data.to_dict())
  if cli_config is not None and cli_config.data.eval_pattern:
    d.eval_pattern = cli_config.data.eval_pattern
    d.on_error = cli_config.data.on_error
  return d


def _student_frames(restored: ckpt_lib.Restored, network: str):
  """(k, method) when the student-only input path feeds this network: the student with a deterministic
  sampling method (its frames are decoded on the host, exactly those on-device sampling would pick);
  None otherwise ('random' keeps on-device draws, so predictions match training's eval)."""
  student = restored.config.student
  if network != "student" or student.sampling == "random":
    return None
  return int(student.k), student.sampling


def _scorer(restored: ckpt_lib.Restored, network: str, *, presampled: bool = False):
  """A jitted fn (frames u8[B,T,D], num_frames i32[B], rng) -> probabilities f32[B,C] of one network.
  `rng` matters only for 'random' student sampling (the same per-batch keys as training's eval).
  `presampled`: the frames are already the student's k (u8[B,k,D] and num_frames_k)."""
  if network == "teacher":
    model, variables = restored.model, restored.variables
    k = None
  else:
    model, variables = restored.student_model, restored.student_variables
    k, method = restored.config.student.k, restored.config.student.sampling
    if presampled:
      k = None
  if model is None:
    raise ValueError(f"the checkpoint has no {network}")
  # bfloat16 runs: the kernels the forward casts anyway are cast once here (bit-identical outputs).
  data = restored.config.data
  variables = throughput.cast_params_for_inference(
      model, variables, frames=data.max_frames if network == "teacher" else restored.config.student.k,
      feature_dim=sum(data.feature_sizes), dtype=restored.config.dtype)

  @jax.jit
  def score(frames_u8, num_frames, rng):
    frames = dequantize(frames_u8, num_frames)
    if k is not None:
      frames, num_frames = sampling.sample_frames(frames, num_frames, k, method, rng=rng)
    return model.apply(variables, frames, num_frames, train=False).probabilities

  return score


def _batches(data: ml_collections.ConfigDict, student_frames=None) -> Iterator[Dict[str, np.ndarray]]:
  from fewframes_jax.data import yt8m  # pylint: disable=g-import-not-at-top
  skips = yt8m.SkipCounter() if data.on_error == "skip" else None
  ds = yt8m.make_dataset(data.eval_pattern, data.eval_batch_size, training=False, process_index=0, process_count=1,
                         student_frames=student_frames, skip_counter=skips, **yt8m.config_options(data))
  return yt8m.as_numpy_batches(ds, skip_counter=skips)  # logs the skip counts at the end of the pass


def predictions(workdir: str, cli_config=None, *, network: str = "student", best: bool = False
                ) -> Iterator[Tuple[np.ndarray, np.ndarray, np.ndarray]]:
  """Yields (video_ids bytes[b], probabilities f32[b, C], labels [b, C]) for the valid rows."""
  restored = ckpt_lib.restore(workdir, best=best)
  data = _data_config(restored.config, cli_config)
  student_frames = _student_frames(restored, network)
  score = _scorer(restored, network, presampled=student_frames is not None)
  lengths = "num_frames" if student_frames is None else "num_frames_k"
  base = jax.random.PRNGKey(eval_lib.EVAL_RNG_SEED)
  for index, batch in enumerate(_batches(data, student_frames)):
    probs = np.asarray(score(batch["frames"], batch[lengths], jax.random.fold_in(base, index)))
    valid = np.asarray(batch["valid"], bool)
    yield batch["video_id"][valid], probs[valid], batch["labels"][valid]


def format_row(video_id: bytes, probabilities: np.ndarray, top_k: int = TOP_K) -> str:
  """`id,label score label score ...` for the top_k classes by descending score."""
  k = min(top_k, probabilities.shape[-1])
  top = np.argsort(-probabilities, kind="stable")[:k]
  vid = video_id.decode("utf-8") if isinstance(video_id, bytes) else str(video_id)
  return vid + "," + " ".join(f"{c} {probabilities[c]:g}" for c in top)


def write_predictions(workdir: str, cli_config, output: str, *, network: str = "student",
                      best: bool = False) -> int:
  """Writes the Kaggle CSV. Returns the number of videos written."""
  n = 0
  with open(output, "w") as f:
    f.write("VideoId,LabelConfidencePairs\n")
    for ids, probs, _ in predictions(workdir, cli_config, network=network, best=best):
      for vid, p in zip(ids, probs):
        f.write(format_row(vid, p) + "\n")
        n += 1
  return n


def evaluate_restored(workdir: str, cli_config=None, *, best: bool = False) -> Dict[str, Dict[str, float]]:
  """Evaluates the teacher and the student of a workdir on the eval data: {network: metrics}."""
  restored = ckpt_lib.restore(workdir, best=best)
  results = {}
  for network in ("teacher", "student"):
    if (restored.model if network == "teacher" else restored.student_model) is None:
      continue
    acc = metrics_lib.EvaluationMetrics(restored.config.data.num_classes, top_k=TOP_K)
    for _, probs, labels in predictions(workdir, cli_config, network=network, best=best):
      acc.update(probs, labels)
    results[network] = acc.result()
  return results


def evaluate_workdir(workdir: str, cli_config=None, *, best: bool = False) -> str:
  """`evaluate_restored` as printable lines."""
  lines = [f"{workdir}:"]
  for network, r in evaluate_restored(workdir, cli_config, best=best).items():
    lines.append(f"  {network}: GAP {r['gap']:.4f} mAP {r['map']:.4f} mAP(all) {r['map_all_classes']:.4f} "
                 f"Hit@1 {r['hit_at_one']:.4f} PERR {r['perr']:.4f} ({r['num_videos']} videos)")
  return "\n".join(lines)
