"""Tests for fewframes_jax.exits.exit_curve and fewframes_jax.exits.exit_gate: the offline curve equals the eval of a
saved any-k run at each budget and with early exit, the class-group GAP against a naive reference, the
gate's features and pseudo-labels against naive references, its fit and its saved copy, and predict's
frames-read file."""
import os

import jax.numpy as jnp
import numpy as np
import pytest

import runs_testlib as lib
from fewframes_jax import specs
from fewframes_jax.exits import exit_curve
from fewframes_jax.exits import exit_gate
from fewframes_jax import metrics as metrics_lib
from fewframes_jax.evaluation import predict
from fewframes_jax.train import loop

pytestmark = pytest.mark.usefixtures("fast_compile")

EXITS = (2, 4, 8)


@pytest.fixture(scope="module")
def anyk_run(tmp_path_factory, fast_compile):  # pylint: disable=unused-argument
  root = tmp_path_factory.mktemp("anyk_run")
  data = lib.write_dataset(str(root / "data"))
  config = lib.tiny_config(data, steps=2, **{"mode": "parallel", "student.k": 8, "student.k_min": 2,
                                             "student.sampling": "coarse_to_fine", "student.exits": "2,4,8",
                                             "student.hrnn.num_blocks": 0})
  workdir = str(root / "run")
  loop.train_and_evaluate(config, workdir)
  curve_rows, inputs = exit_curve.curve_rows, {}

  def keep_inputs(records, plan, flops, **kwargs):  # the records, for thresholds that split the videos
    inputs.update(records=records, plan=plan, flops=flops, kwargs=kwargs)
    return curve_rows(records, plan, flops, **kwargs)

  exit_curve.curve_rows = keep_inputs
  try:
    curve = exit_curve.run(workdir, gate_videos=16)
  finally:
    exit_curve.curve_rows = curve_rows
  return workdir, config, dict(curve, inputs=inputs)


def _row(curve, rule, threshold):
  return next(r for r in curve["rows"] if r["rule"] == rule and r["threshold"] == threshold)


def test_the_curve_equals_the_eval_of_the_saved_run_at_each_budget_and_with_early_exit(anyk_run):
  workdir, config, curve = anyk_run
  assert curve["exits"] == list(EXITS) and curve["num_videos"] == 20 and curve["gate_videos"] == 16
  k = EXITS[1]  # a budget between k_min and k_max (the curve computes every budget's row the same way)
  cli = lib.tiny_config({"train": "", "eval": ""}, **{"student.budget": k})
  got = predict.evaluate_restored(workdir, cli)["student"]
  assert got["gap"] == pytest.approx(_row(curve, "budget", k)["gap"], abs=1e-6)
  gaps = [_row(curve, "budget", k)["gap"] for k in EXITS]  # the exits' answers differ: the GAP tells them apart
  assert min(abs(a - b) for i, a in enumerate(gaps) for b in gaps[:i]) > 1e-4
  for rule in ("confident", "gate"):
    row = _splitting_row(curve, rule)
    assert sum(1 for count in row["exit_share"] if count) >= 2, row  # videos stop at different exits
    cli = lib.tiny_config({"train": "", "eval": ""}, **{"student.exit": f"{rule}:{row['threshold']!r}"})
    got = predict.evaluate_restored(workdir, cli)["student"]
    assert got["gap"] == pytest.approx(row["gap"], abs=1e-6)
    assert got["mean_frames_read"] == pytest.approx(row["mean_frames"])
  # FLOPs: a NeXtVLAD exit adds only its new frames (2, 2, then 4) to the carried sums, then the head
  per_exit = curve["flops"]["per_exit"]
  assert per_exit[0] <= per_exit[1] < per_exit[2] and curve["flops"]["gate"] > 0
  stable = _row(curve, "stable", 1.0)
  assert stable["mean_flops"] == pytest.approx(np.dot(stable["exit_share"], np.cumsum(per_exit)) / 20, rel=1e-6)


def _splitting_row(curve, rule):
  """The curve's row of `rule` at a threshold inside the widest gap between the videos' first-exit scores:
  some videos stop at the first exit, the others go on (a threshold far from every score: the device's
  float32 rounding cannot move a video across it)."""
  inputs = curve["inputs"]
  records, kwargs = inputs["records"], inputs["kwargs"]
  if rule == "gate":
    scores = np.asarray(kwargs["gate"].score(jnp.asarray(records.features[:, 0])))
  else:
    scores = records.rule_scores[rule][:, 0]
  values = np.unique(scores)
  i = int(np.argmax(np.diff(values)))
  threshold = float((values[i] + values[i + 1]) / 2)
  rows = exit_curve.curve_rows(records, inputs["plan"], inputs["flops"], **dict(kwargs, thresholds={rule: (threshold,)}))
  return _row({"rows": rows}, rule, threshold)


def test_predict_writes_the_frames_each_video_read(anyk_run, tmp_path):
  workdir, _, _ = anyk_run
  output = str(tmp_path / "p.csv")
  cli = lib.tiny_config({"train": "", "eval": ""}, **{"student.exit": "confident:0.5"})
  n = predict.write_predictions(workdir, cli, output)
  with open(predict.frames_path(output)) as f:
    lines = f.read().splitlines()
  assert lines[0] == "VideoId,FramesRead" and len(lines) == n + 1 == 21
  assert all(1 <= int(line.split(",")[1]) <= 8 for line in lines[1:])


def test_the_gate_is_saved_with_the_run_and_loads_back(anyk_run):
  workdir, _, _ = anyk_run
  gate = exit_gate.load(workdir)
  x = np.random.default_rng(0).random((5, min(20, lib.NUM_CLASSES) + 2 + len(EXITS))).astype(np.float32)
  scores = np.asarray(gate.score(jnp.asarray(x)))
  assert scores.shape == (5,) and ((scores >= 0) & (scores <= 1)).all()
  with pytest.raises(FileNotFoundError, match="no exit gate"):
    exit_gate.load(os.path.dirname(workdir))


def test_gate_features_and_targets_against_naive_references():
  rng = np.random.default_rng(1)
  probs, previous, last = (rng.random((3, 30)).astype(np.float32) for _ in range(3))
  f = np.asarray(exit_gate.features(jnp.asarray(probs), jnp.asarray(previous), 1, 4))
  for b in range(3):
    top = np.argsort(-probs[b], kind="stable")[:20]
    np.testing.assert_allclose(f[b, :20], probs[b, top], rtol=1e-6)
    overlap = len(set(top) & set(np.argsort(-previous[b], kind="stable")[:20])) / 20
    assert f[b, 20] == pytest.approx(overlap)
    assert f[b, 21] == pytest.approx(np.abs(probs[b, top] - previous[b, top]).max())
    assert f[b, 22:].tolist() == [0, 1, 0, 0]
    final = np.argsort(-last[b], kind="stable")[:20]
    weights = 1.0 / (1.0 + np.arange(20))
    want = sum(w for w, c in zip(weights, final) if c in set(top)) / weights.sum()
    assert float(exit_gate.settled_targets(jnp.asarray(probs), jnp.asarray(last))[b]) == pytest.approx(want, rel=1e-6)
  first = np.asarray(exit_gate.features(jnp.asarray(probs), None, 0, 4))
  assert (first[:, 20:22] == 0).all() and first[0, 22] == 1


def test_the_gate_learns_a_separable_target():
  rng = np.random.default_rng(2)
  x = rng.normal(size=(400, 6)).astype(np.float32)
  y = (x[:, 0] > 0).astype(np.float32)
  gate = exit_gate.fit(x, y, (1, 2), steps=300)
  predicted = np.asarray(gate.score(jnp.asarray(x))) >= 0.5
  assert (predicted == (y > 0)).mean() > 0.95


def test_the_gap_of_a_class_group_equals_the_gap_with_the_other_classes_removed():
  rng = np.random.default_rng(3)
  n, c = 12, 10  # C <= 20: each video's top-20 holds every class
  probs = rng.random((n, 2, c)).astype(np.float32)
  labels = (rng.random((n, c)) < 0.3).astype(np.float32)
  top = [metrics_lib.top_k_hits(jnp.asarray(probs[:, e]), jnp.asarray(labels), 20) for e in range(2)]
  group = np.arange(c) % 2 == 1
  records = exit_curve.ExitRecords(
      scores=np.stack([np.asarray(t.scores) for t in top], 1), class_ids=np.stack([np.asarray(t.class_ids) for t in top], 1),
      hits=np.stack([np.asarray(t.hits) for t in top], 1), features=np.zeros((n, 2, 1)), rule_scores={},
      targets=np.zeros((n, 2)), num_labels=labels.sum(1).astype(np.int32), num_frames=np.full(n, 9),
      class_positives=labels.sum(0).astype(np.int64), group_labels={"odd": labels[:, group].sum(1).astype(np.int32)})
  exit_index = np.arange(n) % 2
  chosen = probs[np.arange(n), exit_index]
  want = metrics_lib.global_average_precision(chosen[:, group], labels[:, group])
  got = exit_curve.metrics_at(records, exit_index, c, ("odd", group))["gap"]
  assert got == pytest.approx(want, abs=1e-6)
  assert exit_curve.metrics_at(records, exit_index, c)["gap"] == pytest.approx(
      metrics_lib.global_average_precision(chosen, labels), abs=1e-6)
  np.testing.assert_array_equal(exit_curve.first_exit(np.array([[0.1, 0.9, 0.0], [0.95, 0.2, 0.0], [0.0, 0.0, 1.0]]),
                                                      0.8), [1, 0, 2])


def test_the_exit_benchmark_counts_every_video_once_on_both_paths(anyk_run):
  from fewframes_jax import checkpoint  # pylint: disable=g-import-not-at-top
  from fewframes_jax.benchmark import exit_pipeline  # pylint: disable=g-import-not-at-top
  workdir, _, _ = anyk_run
  anyk_net = checkpoint.restore(workdir).network("student")
  fixed_net = checkpoint.restore(workdir).network("student", budget=4)
  result = exit_pipeline.benchmark_exit(anyk_net, fixed_net, policy=specs.ExitPolicy("confident", 0.5),
                                        batch_size=8, group_batches=2, rounds=1)
  exit_row, fixed_row = result["rows"]
  assert exit_row["videos"] == fixed_row["videos"] == 20 and sum(exit_row["exit_counts"]) == 20
  lengths = _eval_lengths(anyk_net)
  assert exit_row["decoded_frames_per_video"] == pytest.approx(np.minimum(lengths, 8).mean())
  assert fixed_row["decoded_frames_per_video"] == pytest.approx(np.minimum(lengths, 4).mean())
  assert 1 <= exit_row["mean_frames_read"] <= 8 and result["ratio"] > 0
  assert "early exit (confident:0.5" in exit_pipeline.format_exit(result)


def _eval_lengths(network) -> np.ndarray:
  """The eval split's true lengths (at most max_frames), read back from its TFRecords."""
  from fewframes_jax.data import yt8m  # pylint: disable=g-import-not-at-top
  data = network.spec.data
  ds = yt8m.make_dataset(data.eval_pattern, 8, training=False, process_index=0, process_count=1,
                         **yt8m.config_options(data))
  return np.concatenate([np.asarray(b["num_frames"])[np.asarray(b["valid"]).astype(bool)]
                         for b in yt8m.as_numpy_batches(ds)])


def test_the_exit_benchmark_of_a_content_order_decodes_every_frame(anyk_run, monkeypatch):
  """A far-from-mean order ranks every frame, so its exit path decodes all of them (and reads only its exits')."""
  import dataclasses  # pylint: disable=g-import-not-at-top
  from fewframes_jax import checkpoint  # pylint: disable=g-import-not-at-top
  from fewframes_jax.benchmark import exit_pipeline  # pylint: disable=g-import-not-at-top
  workdir, _, _ = anyk_run
  anyk_net = checkpoint.restore(workdir).network("student")
  plan = dataclasses.replace(exit_curve.plan_of(anyk_net), order="far_from_mean")
  monkeypatch.setattr(exit_curve, "plan_of", lambda network: plan)
  result = exit_pipeline.benchmark_exit(anyk_net, checkpoint.restore(workdir).network("student", budget=4),
                                        policy=specs.ExitPolicy("confident", 0.5), batch_size=8,
                                        group_batches=2, rounds=1)
  exit_row = result["rows"][0]
  lengths = _eval_lengths(anyk_net)
  assert exit_row["videos"] == 20 and sum(exit_row["exit_counts"]) == 20
  assert exit_row["decoded_frames_per_video"] == pytest.approx(np.minimum(lengths, anyk_net.max_frames).mean())
  assert exit_row["mean_frames_read"] <= np.minimum(lengths, 8).mean()


def test_a_budget_or_exit_the_run_cannot_take_is_a_user_error(anyk_run):
  from fewframes_jax.errors import UserError  # pylint: disable=g-import-not-at-top
  workdir, _, _ = anyk_run
  for fields, message in (({"student.budget": 9}, "budgets in"), ({"student.exit": "often:1"}, "rule")):
    with pytest.raises(UserError, match=message):
      predict.evaluate_restored(workdir, lib.tiny_config({"train": "", "eval": ""}, **fields))
