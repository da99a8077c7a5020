"""Inference from a trained workdir over TFRecords: the eval metrics of a saved run, and the Kaggle CSV.

Both go through `inference.Network` (the project's one inference path). `evaluate_workdir` runs the very
computation the trainer's eval runs (`evaluate.make_eval_step` over the same full-frame batches), so a
saved run re-evaluated with the same XLA flags reproduces its logged metrics exactly.

CSV format (the YouTube-8M starter's inference.py and Kaggle): header `VideoId,LabelConfidencePairs`,
then one line per video: `<id>,<label> <score> <label> <score> ...` with the top 20 classes sorted by
descending score (`%g`-style scores). The student (with a deterministic sampling method) is fed by the
student-only input path: each record is parsed but only its k frames are decoded and shipped
(`yt8m.make_dataset(student_frames=...)`).

The data pattern is the command-line config's `data.eval_pattern` when given, else the trained run's.
"""
from typing import Dict, Iterator, Optional, Tuple

import ml_collections
import numpy as np

from fewframes_jax import checkpoint as ckpt_lib
from fewframes_jax import evaluate as eval_lib
from fewframes_jax import inference
from fewframes_jax import metrics as metrics_lib


def data_config(run_config: ml_collections.ConfigDict, cli_config=None) -> ml_collections.ConfigDict:
  """The run's data settings, with the command line's eval files (and error policy) when it gives some.
  A setting the saved run predates (a field added to `config.data` since) takes the command line's value."""
  d = ml_collections.ConfigDict(run_config.data.to_dict())
  for key, value in (cli_config.data.items() if cli_config is not None else ()):
    if key not in d:
      d[key] = value
  if cli_config is not None and cli_config.data.eval_pattern:
    d.eval_pattern = cli_config.data.eval_pattern
    d.on_error = cli_config.data.on_error
  return d


def batches(data: ml_collections.ConfigDict, input_frames=None) -> Iterator[Dict[str, np.ndarray]]:
  """Eval-mode batches of `data.eval_pattern` for this process alone (full frames, or only the
  `input_frames=(k, method)` of each video), the last batch padded."""
  from fewframes_jax.data import reader, yt8m  # pylint: disable=g-import-not-at-top  (TensorFlow)
  counter = reader.SkipCounter()
  ds = yt8m.make_dataset(data.eval_pattern, data.eval_batch_size, training=False, process_index=0, process_count=1,
                         student_frames=input_frames, skip_counter=counter, **yt8m.config_options(data))
  return yt8m.as_numpy_batches(ds, skip_counter=counter)  # logs the record counts at the end of the pass


def predictions(workdir: str, cli_config=None, *, network: str = "student", best: bool = False,
                step: Optional[int] = None) -> Iterator[Tuple[np.ndarray, np.ndarray, np.ndarray]]:
  """Yields (video_ids bytes[b], probabilities f32[b, C], labels [b, C]) for the valid rows of each batch."""
  net = ckpt_lib.restore(workdir, step=step, best=best).network(network)
  data = data_config(net.config, cli_config)
  input_frames = net.scorer.selection.input_frames()
  lengths = "num_frames" if input_frames is None else "num_frames_k"
  for index, batch in enumerate(batches(data, input_frames)):
    probs = np.asarray(net.probabilities(batch["frames"], batch[lengths], batch_index=index,
                                         preselected=input_frames is not None))
    valid = np.asarray(batch["valid"], bool)
    yield batch["video_id"][valid], probs[valid], batch["labels"][valid]


def format_row(video_id: bytes, probabilities: np.ndarray, top_k: int = metrics_lib.TOP_K) -> str:
  """`id,label score label score ...` for the top_k classes by descending score."""
  k = min(top_k, probabilities.shape[-1])
  top = np.argsort(-probabilities, kind="stable")[:k]
  vid = video_id.decode("utf-8") if isinstance(video_id, bytes) else str(video_id)
  return vid + "," + " ".join(f"{c} {probabilities[c]:g}" for c in top)


def write_predictions(workdir: str, cli_config, output: str, *, network: str = "student",
                      best: bool = False, step: Optional[int] = None) -> int:
  """Writes the Kaggle CSV. Returns the number of videos written."""
  n = 0
  with open(output, "w") as f:
    f.write("VideoId,LabelConfidencePairs\n")
    for ids, probs, _ in predictions(workdir, cli_config, network=network, best=best, step=step):
      for vid, p in zip(ids, probs):
        f.write(format_row(vid, p) + "\n")
        n += 1
  return n


def evaluate_restored(workdir: str, cli_config=None, *, best: bool = False, step: Optional[int] = None
                      ) -> Dict[str, Dict[str, float]]:
  """The teacher and the student of a saved run (those it has) on the eval data: {network: metrics},
  computed as the trainer's eval computes them (`evaluate.evaluate_dataset`)."""
  restored = ckpt_lib.restore(workdir, step=step, best=best)
  networks = {which: restored.network(which) for which in inference.NETWORKS
              if (restored.model if which == "teacher" else restored.student_model) is not None}
  return eval_lib.evaluate_dataset({w: n.scorer for w, n in networks.items()},
                                   {w: n.variables for w, n in networks.items()},
                                   data_config(restored.config, cli_config))


def evaluate_workdir(workdir: str, cli_config=None, *, best: bool = False, step: Optional[int] = None) -> str:
  """`evaluate_restored` as printable lines."""
  lines = [f"{workdir}:"]
  for network, r in evaluate_restored(workdir, cli_config, best=best, step=step).items():
    lines.append(f"  {network}: GAP {r['gap']:.4f} mAP {r['map']:.4f} mAP(all) {r['map_all_classes']:.4f} "
                 f"Hit@1 {r['hit_at_one']:.4f} PERR {r['perr']:.4f} ({r['num_videos']} videos)")
  return "\n".join(lines)
