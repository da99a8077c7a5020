"""Why a selector helps or not, on the bundled synthetic data only: does it pick the frames that carry a
label's evidence? The generator knows them (`data/synthetic.py`: a burst class shows in one burst of 2-6
frames, a long class in segments covering 30-70% of a video), so for every eval video and label we can ask
whether the student's k frames include at least one evidence frame.

  evidence_recall(network, config)  -> {'burst': recall, 'long': recall, 'burst_labels', 'long_labels',
                                        'label_free_chosen', 'label_free_all', ...}

recall = the share of (video, label) pairs of that class kind with >= 1 chosen frame among the label's
evidence frames (on the `realistic` split: burst = its event classes, long = its sustained ones).
label_free_chosen = the share of the chosen frames that fall on label-free segments (intros, outros, black
frames and fades, title cards, cut-aways: `VideoPlan.label_free`), label_free_all = their share of all real
frames of the same videos (what a rule blind to content picks on average); per kind in
'label_free_chosen_by_kind' / 'label_free_all_by_kind'. Both are 0 on the `short` and `long` splits.

It is a diagnostic of this generator, not a metric of real YouTube-8M data (whose evidence frames nobody
knows); RESULTS.md uses it to show why a target is missed.
"""
from typing import Dict

import numpy as np

from fewframes_jax.errors import UserError


def _index(video_id: bytes) -> int:
  text = video_id.decode() if isinstance(video_id, bytes) else str(video_id)
  if not text.startswith("eval"):
    raise UserError(f"evidence_recall: video id {text!r} is not a bundled eval video ('eval<index>')")
  return int(text[4:])


def label_free_counts(label_free: np.ndarray, chosen: np.ndarray, num_frames: int) -> np.ndarray:
  """Frame counts by kind (`realistic.KINDS`; kind 0: content) of one video: int64[2, K], row 0 over the
  chosen frames, row 1 over all real frames.

  label_free: int8[L] the plan's kind per frame; chosen: int[k'] the chosen real frame indices (< num_frames);
  num_frames: the real frames the student could choose from (min(L, max_frames))."""
  from fewframes_jax.data import realistic  # pylint: disable=g-import-not-at-top
  kinds = len(realistic.KINDS)
  return np.stack([np.bincount(label_free[np.asarray(chosen, np.int64)], minlength=kinds),
                   np.bincount(label_free[:num_frames], minlength=kinds)]).astype(np.int64)


def _label_free_shares(counts: np.ndarray) -> Dict[str, object]:
  """The report's label-free shares from summed `label_free_counts`."""
  from fewframes_jax.data import realistic  # pylint: disable=g-import-not-at-top
  share = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
  out = {"label_free_chosen": float(1 - share[0, 0]) if counts[0].sum() else 0.0,
         "label_free_all": float(1 - share[1, 0]) if counts[1].sum() else 0.0}
  for row, name in enumerate(("label_free_chosen_by_kind", "label_free_all_by_kind")):
    out[name] = {kind: float(share[row, k]) for k, kind in enumerate(realistic.KINDS) if k}
  return out


def evidence_recall(network, config, *, max_videos: int = 0) -> Dict[str, float]:
  """The chosen frames' recall of the evidence frames of burst and long labels, over the bundled eval split.

  network: a student `inference.Network` (its selection picks the frames: `Selection.select` with its
  selector's parameters); config: the run's resolved config (its `data.bundled` names the generator)."""
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  from fewframes_jax import inference  # pylint: disable=g-import-not-at-top
  from fewframes_jax.data import realistic, synthetic, yt8m  # pylint: disable=g-import-not-at-top
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
  label_free = np.zeros((2, len(realistic.KINDS)), np.int64)
  seen = 0
  for batch_index, batch in enumerate(yt8m.as_numpy_batches(dataset)):
    n = jnp.asarray(batch["num_frames"], jnp.int32)
    frames = dequantize(jnp.asarray(batch["frames"]), n)
    _, nk, idx = network.forward.selection.select(frames, n, inference.eval_key(batch_index), return_indices=True,
                                                 selector_params=selector_params)
    idx, nk = np.asarray(idx), np.asarray(nk)
    for row in np.flatnonzero(batch["valid"]):
      plan = synthetic.plan_video(spec, seed=d.bundled.seed, split="eval", index=_index(batch["video_id"][row]))
      chosen = idx[row, :nk[row]]
      label_free += label_free_counts(plan.label_free, chosen, int(batch["num_frames"][row]))
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
          "burst_labels": hits["burst"][1], "long_labels": hits["long"][1], "videos": seen,
          **_label_free_shares(label_free)}


def _auc(positive: np.ndarray, negative: np.ndarray) -> float:
  """P(a positive scores above a negative) + P(tie) / 2."""
  if positive.size == 0 or negative.size == 0:
    return float("nan")
  both = np.concatenate([positive, negative])
  ranks = np.argsort(np.argsort(both, kind="stable"), kind="stable").astype(np.float64) + 1
  for value in np.unique(both):  # average ranks of ties
    tied = both == value
    if tied.sum() > 1:
      ranks[tied] = ranks[tied].mean()
  return float((ranks[:positive.size].sum() - positive.size * (positive.size + 1) / 2) / (positive.size * negative.size))


def judgement_auc(teacher, config, *, max_videos: int = 100) -> Dict[str, float]:
  """How well two frame judgements tell a burst label's evidence frames from the video's frames without
  evidence: the AUC over (evidence frame, other frame) pairs within a video, averaged over videos:
    'teacher': the `rank` scorer's target, the frozen teacher's single-frame agreement with the labels
               (`scorer_training.label_agreement` of `single_frame_probabilities`);
    'far_from_mean': the frame's distance to the video's mean frame.
  0.5 is chance. teacher: the teacher `inference.Network`; bundled synthetic data only."""
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  from fewframes_jax.data import synthetic, yt8m  # pylint: disable=g-import-not-at-top
  from fewframes_jax.data.quantization import dequantize  # pylint: disable=g-import-not-at-top
  from fewframes_jax.sampling import scorer_training  # pylint: disable=g-import-not-at-top
  d = config.data
  if "synthetic-v" not in d.eval_pattern:
    raise UserError("judgement_auc needs the bundled synthetic data (its generator knows the evidence)")
  spec = synthetic.named_spec(d.bundled.spec or "short", d.bundled.num_classes)
  burst_class = synthetic.is_burst_class(spec)
  model, variables = teacher.forward.model, teacher.variables
  judge = jax.jit(lambda x, labels: scorer_training.label_agreement(
      scorer_training.single_frame_probabilities(model, variables, x, jax.random.PRNGKey(0)), labels))
  scores = {"teacher": ([], []), "far_from_mean": ([], [])}
  seen = 0
  dataset = yt8m.make_dataset(d.eval_pattern, 1, training=False, process_index=0, process_count=1,
                              **yt8m.config_options(d))
  for batch in yt8m.as_numpy_batches(dataset):
    if not batch["valid"][0]:
      continue
    plan = synthetic.plan_video(spec, seed=d.bundled.seed, split="eval", index=_index(batch["video_id"][0]))
    n = int(batch["num_frames"][0])
    evidence = np.zeros(n, bool)
    for label, frames in zip(plan.labels, plan.evidence):
      if burst_class[label]:
        evidence |= frames[:n]
    if not evidence.any() or evidence.all():
      continue
    x = dequantize(jnp.asarray(batch["frames"][:, :n]), jnp.asarray([n], jnp.int32))  # [1, n, D]
    labels = jnp.asarray(batch["labels"], jnp.float32)
    y = np.asarray(judge(x, labels))[0]
    frames = np.asarray(x)[0]
    distance = np.linalg.norm(frames - frames.mean(0), axis=-1)
    for name, value in (("teacher", y), ("far_from_mean", distance)):
      scores[name][0].append(value[evidence])
      scores[name][1].append(value[~evidence])
    seen += 1
    if seen >= max_videos:
      break
  out = {"videos": seen}
  for name, (pos, neg) in scores.items():  # per video, then the mean: frames are compared within a video
    out[name] = float(np.mean([_auc(p, q) for p, q in zip(pos, neg)])) if pos else float("nan")
  return out
