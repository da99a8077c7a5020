"""Inference from a trained workdir over TFRecords: the eval metrics of a saved run, and the Kaggle CSV.

Both go through `inference.Network` (the project's one inference path). `evaluate_workdir` runs the very
computation the trainer's eval runs (`evaluate.make_eval_step` over the same full-frame batches; a student
alone whose frames a fixed rule picks reads only those frames, picked on the host: the same frames), so a
saved run re-evaluated with the same XLA flags reproduces its logged metrics exactly.

CSV format (the YouTube-8M starter's inference.py and Kaggle): header `VideoId,LabelConfidencePairs`,
then one line per video: `<id>,<label> <score> <label> <score> ...` with the top 20 classes sorted by
descending score (`%g`-style scores). The student (with a deterministic sampling method, or a learned
selector that scores one stream) is fed by the student-only input path: each record is parsed but only
its k frames are decoded and shipped (`yt8m.make_dataset(student_frames=...)`, `Selection.input_frames`).

The data pattern is the command-line config's `data.eval_pattern` when given, else the trained run's.
"""
import dataclasses
import os
from typing import Dict, Iterator, Optional, Tuple

import numpy as np

from fewframes_jax import specs
from fewframes_jax import checkpoint as ckpt_lib
from fewframes_jax.evaluation import evaluate as eval_lib
from fewframes_jax.exits import early_exit, exit_curve, exit_gate
from fewframes_jax import inference
from fewframes_jax import metrics as metrics_lib
from fewframes_jax.data import eval_batches as eval_input
from fewframes_jax.data.quantization import dequantize
from fewframes_jax.errors import UserError


def data_spec(run: specs.RunSpec, cli_config=None) -> specs.DataSpec:
  """The run's data, with the command line's eval files (and error policy) when it gives some."""
  if cli_config is not None and cli_config.data.eval_pattern:
    return dataclasses.replace(run.data, eval_pattern=str(cli_config.data.eval_pattern),
                               on_error=str(cli_config.data.on_error))
  return run.data


def student_options(cli_config=None) -> Tuple[Optional[int], str]:
  """(budget, exit spec) the command line gives an any-k student (`--config.student.budget=...`,
  `--config.student.exit=...`); (None, '') when it gives none."""
  s = cli_config.student if cli_config is not None and "student" in cli_config else {}
  return s.get("budget") or None, s.get("exit") or ""


def _exit_policy(net: inference.Network, spec: str, workdir: str):
  """The early-exit policy (and the gate it needs, saved in `workdir`) of `spec` for the run's any-k student."""
  try:
    policy = specs.ExitPolicy.parse(spec)
  except ValueError as e:
    raise UserError(str(e)) from None
  if policy is None:
    return None, None
  if net.spec.student.budgets is None:
    raise UserError(f"student.exit={spec!r}: the run's student is not an any-k student")
  return policy, exit_gate.load(workdir) if policy.rule == "gate" else None


def _exit_predictions(net: inference.Network, data, policy, gate):
  """(ids, probabilities, labels, frames read) per batch, each video stopped by `policy` (batched waves)."""
  import jax  # pylint: disable=g-import-not-at-top
  plan = exit_curve.plan_of(net)
  view_fn = jax.jit(lambda v, f, n: plan.view(v, dequantize(f, n), n))
  cache = {}
  for batch in eval_input.eval_batches(data, process_index=0, process_count=1):
    valid = np.asarray(batch["valid"], bool)
    view = [np.asarray(a)[valid] for a in jax.device_get(view_fn(net.variables, batch["frames"], batch["num_frames"]))]
    result = early_exit.run_waves(plan, policy, net.variables, *view, batch_size=data.eval_batch_size, gate=gate,
                                  step_cache=cache)
    yield batch["video_id"][valid], result.probabilities, batch["labels"][valid], result.frames_read


def predictions(workdir: str, cli_config=None, *, network: str = "student", best: bool = False,
                step: Optional[int] = None) -> Iterator[Tuple[np.ndarray, np.ndarray, np.ndarray]]:
  """Yields (video_ids bytes[b], probabilities f32[b, C], labels [b, C]) for the valid rows of each batch
  (`scored_videos` without the frames read)."""
  for ids, probs, labels, _ in scored_videos(workdir, cli_config, network=network, best=best, step=step):
    yield ids, probs, labels


def scored_videos(workdir: str, cli_config=None, *, network: str = "student", best: bool = False,
                  step: Optional[int] = None) -> Iterator[Tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]:
  """Yields (video_ids bytes[b], probabilities f32[b, C], labels [b, C], frames read i32[b]) for the valid
  rows of each batch. An any-k student runs at the command line's `student.budget`, or with early exit
  when it gives `student.exit`."""
  budget, exit_spec = student_options(cli_config) if network == "student" else (None, "")
  net = ckpt_lib.restore(workdir, step=step, best=best).network(network, budget=None if exit_spec else budget)
  data = data_spec(net.spec, cli_config)
  policy, gate = _exit_policy(net, exit_spec, workdir)
  if policy is not None:
    yield from _exit_predictions(net, data, policy, gate)
    return
  input_frames = net.forward.selection.input_frames(inference.split_selector(net.variables)[1])
  lengths = "num_frames" if input_frames is None else "num_frames_k"
  for index, batch in enumerate(eval_input.eval_batches(data, input_frames=input_frames, process_index=0, process_count=1)):
    probs = np.asarray(net.probabilities(batch["frames"], batch[lengths], batch_index=index,
                                         preselected=input_frames is not None))
    valid = np.asarray(batch["valid"], bool)
    frames = np.minimum(batch["num_frames"], net.frames_seen)
    yield batch["video_id"][valid], probs[valid], batch["labels"][valid], frames[valid]


def format_row(video_id: bytes, probabilities: np.ndarray, top_k: int = metrics_lib.TOP_K) -> str:
  """`id,label score label score ...` for the top_k classes by descending score."""
  k = min(top_k, probabilities.shape[-1])
  top = np.argsort(-probabilities, kind="stable")[:k]
  vid = video_id.decode("utf-8") if isinstance(video_id, bytes) else str(video_id)
  return vid + "," + " ".join(f"{c} {probabilities[c]:g}" for c in top)


def frames_path(output: str) -> str:
  """Where `write_predictions` puts the frames each video's prediction read: next to the CSV."""
  return os.path.splitext(output)[0] + "_frames.csv"


def write_predictions(workdir: str, cli_config, output: str, *, network: str = "student",
                      best: bool = False, step: Optional[int] = None) -> int:
  """Writes the Kaggle CSV, and next to it (`frames_path`) `VideoId,FramesRead`: the frames each video's
  prediction read (min(n, k); with early exit, where the video stopped). Returns the number of videos."""
  n = 0
  with open(output, "w") as f, open(frames_path(output), "w") as frames_file:
    f.write("VideoId,LabelConfidencePairs\n")
    frames_file.write("VideoId,FramesRead\n")
    for ids, probs, _, frames in scored_videos(workdir, cli_config, network=network, best=best, step=step):
      for vid, p, used in zip(ids, probs, frames):
        f.write(format_row(vid, p) + "\n")
        frames_file.write(f"{vid.decode('utf-8') if isinstance(vid, bytes) else vid},{int(used)}\n")
        n += 1
  return n


def evaluate_restored(workdir: str, cli_config=None, *, best: bool = False, step: Optional[int] = None
                      ) -> Dict[str, Dict[str, float]]:
  """The teacher and the student of a saved run (those it has) on the eval data: {network: metrics},
  computed as the trainer's eval computes them (`evaluate.evaluate_dataset`; a student scored alone, in
  a run without a teacher, reads through the student-only input path when a fixed rule picks its
  frames). An any-k student is scored
  at the command line's `student.budget`; with `student.exit` it is scored with early exit (its metrics
  then also hold `mean_frames_read`)."""
  restored = ckpt_lib.restore(workdir, step=step, best=best)
  budget, exit_spec = student_options(cli_config)
  networks = {which: restored.network(which, budget=budget if which == "student" else None)
              for which in inference.NETWORKS
              if (restored.model if which == "teacher" else restored.student_model) is not None}
  if exit_spec and "student" in networks:
    del networks["student"]
  results = {}
  if networks:
    # A student scored alone reads only its k frames when a fixed rule picks them: the device's frames.
    # Without its selector's parameters a learned selector reads every frame (a host scorer could break
    # near-ties otherwise, and this eval must equal the trainer's).
    input_frames = networks["student"].forward.selection.input_frames() if set(networks) == {"student"} else None
    results = eval_lib.evaluate_dataset({w: n.forward for w, n in networks.items()},
                                        {w: n.variables for w, n in networks.items()},
                                        data_spec(restored.spec, cli_config), input_frames=input_frames)
  if exit_spec:
    acc = metrics_lib.EvaluationMetrics(restored.spec.data.num_classes)
    frames = []
    for _, probs, labels, used in scored_videos(workdir, cli_config, best=best, step=step):
      acc.update(probs, labels)
      frames.append(used)
    results["student"] = dict(acc.result(), mean_frames_read=float(np.concatenate(frames).mean()), exit=exit_spec)
  return results


def evaluate_workdir(workdir: str, cli_config=None, *, best: bool = False, step: Optional[int] = None) -> str:
  """`evaluate_restored` as printable lines."""
  lines = [f"{workdir}:"]
  for network, r in evaluate_restored(workdir, cli_config, best=best, step=step).items():
    extra = f", early exit {r['exit']}: {r['mean_frames_read']:.1f} frames read per video" if "exit" in r else ""
    lines.append(f"  {network}: GAP {r['gap']:.4f} mAP {r['map']:.4f} mAP(all) {r['map_all_classes']:.4f} "
                 f"Hit@1 {r['hit_at_one']:.4f} PERR {r['perr']:.4f} ({r['num_videos']} videos{extra})")
  return "\n".join(lines)
