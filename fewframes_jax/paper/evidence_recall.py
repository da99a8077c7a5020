"""Why a selector helps or not, on the bundled synthetic data only: does it pick the frames that carry a
label's evidence? The generator knows them (`data/synthetic.py`: a burst class shows in one burst of 2-6
frames, a long class in segments covering 30-70% of a video), so for every eval video and label we can ask
whether the student's k frames include at least one evidence frame.

  evidence_recall(network, config)  -> {'burst': recall, 'long': recall, 'burst_labels', 'long_labels'}

recall = the share of (video, label) pairs of that class kind with >= 1 chosen frame among the label's
evidence frames. It is a diagnostic of this generator, not a metric of real YouTube-8M data (whose evidence
frames nobody knows); RESULTS.md uses it to show why a target is missed.
"""
from typing import Dict

import numpy as np

from fewframes_jax.errors import UserError


def _index(video_id: bytes) -> int:
  text = video_id.decode() if isinstance(video_id, bytes) else str(video_id)
  if not text.startswith("eval"):
    raise UserError(f"evidence_recall: video id {text!r} is not a bundled eval video ('eval<index>')")
  return int(text[4:])


def evidence_recall(network, config, *, max_videos: int = 0) -> Dict[str, float]:
  """The chosen frames' recall of the evidence frames of burst and long labels, over the bundled eval split.

  network: a student `inference.Network` (its selection picks the frames: `Selection.select` with its
  selector's parameters); config: the run's resolved config (its `data.bundled` names the generator)."""
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  from fewframes_jax import inference  # pylint: disable=g-import-not-at-top
  from fewframes_jax.data import synthetic, yt8m  # pylint: disable=g-import-not-at-top
  from fewframes_jax.data.quantization import dequantize  # pylint: disable=g-import-not-at-top
  d = config.data
  if "synthetic-v" not in d.eval_pattern:  # the bundled data's folder (`data/bundled.py`)
    raise UserError("evidence_recall needs the bundled synthetic data (its generator knows the evidence)")
  spec = synthetic.named_spec(d.bundled.spec or "short", d.bundled.num_classes)
  burst_class = synthetic.is_burst_class(spec)
  dataset = yt8m.make_dataset(d.eval_pattern, d.eval_batch_size, training=False, process_index=0, process_count=1,
                              **yt8m.config_options(d))
  _, selector_params = inference.split_selector(network.variables)
  hits = {"burst": [0, 0], "long": [0, 0]}
  seen = 0
  for batch_index, batch in enumerate(yt8m.as_numpy_batches(dataset)):
    n = jnp.asarray(batch["num_frames"], jnp.int32)
    frames = dequantize(jnp.asarray(batch["frames"]), n)
    _, nk, idx = network.scorer.selection.select(frames, n, inference.eval_key(batch_index), return_indices=True,
                                                 selector_params=selector_params)
    idx, nk = np.asarray(idx), np.asarray(nk)
    for row in np.flatnonzero(batch["valid"]):
      plan = synthetic.plan_video(spec, seed=d.bundled.seed, split="eval", index=_index(batch["video_id"][row]))
      chosen = idx[row, :nk[row]]
      for label, evidence in zip(plan.labels, plan.evidence):
        kind = "burst" if burst_class[label] else "long"
        hits[kind][0] += int(evidence[chosen[chosen < evidence.shape[0]]].any())
        hits[kind][1] += 1
      seen += 1
      if max_videos and seen >= max_videos:
        break
    if max_videos and seen >= max_videos:
      break
  return {"burst": hits["burst"][0] / max(hits["burst"][1], 1), "long": hits["long"][0] / max(hits["long"][1], 1),
          "burst_labels": hits["burst"][1], "long_labels": hits["long"][1], "videos": seen}
