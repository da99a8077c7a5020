"""Tests for fewframes_jax.exits.early_exit: each exit equals the any-k student at that budget (incrementally
for the VLAD families, to float tolerance), batched waves equal one video at a time and the offline
outputs, no exit reads past a video's frames, the host view equals the device view, and the policies."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import test_anyk
import setup_testlib
from fewframes_jax import specs
from fewframes_jax.exits import early_exit
from fewframes_jax import inference
from fewframes_jax.train import trainer as train_lib
from fewframes_jax.data.quantization import dequantize

pytestmark = pytest.mark.usefixtures("fast_compile")

EXITS = (3, 6, 12)
LENGTHS = (24, 10, 5, 2, 0, 7)
# Incremental VLAD sums add the same float32 terms in another order than one pass over all frames.
INCREMENTAL_ATOL = 1e-5


def plan_and_view(family, order="coarse_to_fine"):
  config = test_anyk.anyk_config(family, order=order, **{"student.exits": ",".join(map(str, EXITS))})
  setup, state = setup_testlib.setup_run(config)
  variables = train_lib.eval_variables(state)["student"]
  b = test_anyk.batch(5, LENGTHS)
  n = jnp.asarray(b["num_frames"])
  frames = dequantize(jnp.asarray(b["frames"]), n)
  plan = early_exit.ExitPlan(setup.student_model, specs.RunSpec.from_config(config).student.exits, test_anyk.K_MAX, order,
                             scorer=setup.selection.scorer)
  return config, setup, variables, b, plan, plan.view(variables, frames, n)


@pytest.mark.parametrize("family,order", [("nextvlad", "coarse_to_fine"), ("netvlad", "far_from_mean"),
                                          ("hrnn", "coarse_to_fine"), ("nextvlad", "learned")])
def test_every_exit_equals_the_student_at_that_budget(family, order):
  """(The learned order: the student's own scorer ranks the frames, and the budget-k student reads its
  top k, `inference.student_forward`.)"""
  config, setup, variables, b, plan, view = plan_and_view(family, order)
  assert plan.incremental == (family != "hrnn")
  outputs = jax.jit(plan.outputs)(variables, view)
  n = jnp.asarray(b["num_frames"])
  frames = dequantize(jnp.asarray(b["frames"]), n)
  fed = [[] for _ in LENGTHS]  # per video, the frames every exit so far has fed the model
  for e, (k, got) in enumerate(zip(EXITS, outputs)):
    forward = inference.student_forward(specs.RunSpec.from_config(config), setup.student_model, k)
    want = jax.jit(forward.apply)(variables, jnp.asarray(b["frames"]), n).probabilities
    np.testing.assert_allclose(np.asarray(got), np.asarray(want), atol=INCREMENTAL_ATOL)
    # the frames: those the exits fed (incremental: the new ones of each exit) are the student's at k
    chosen, nk = forward.selection.select(frames, n, inference.eval_key(0),
                                         selector_params=inference.split_selector(variables)[1])
    exit_frames, count, _ = plan.exit_frames(view, e)
    for v in range(len(LENGTHS)):
      rows = np.asarray(exit_frames)[v, :int(count[v])].tolist()
      fed[v] = fed[v] + rows if plan.incremental else rows
      assert sorted(fed[v]) == sorted(np.asarray(chosen)[v, :int(nk[v])].tolist()), (k, v)
    # the tolerance tells frames apart: the student at k on other frames (the uniform rule) is far off
    other = inference.student_forward(specs.RunSpec.from_config(config), setup.student_model, k)
    other = inference.Forward(other.model, inference.Selection(k, "uniform", other.selection.slots))
    wrong = other.apply(variables, jnp.asarray(b["frames"]), n).probabilities
    assert float(jnp.abs(wrong - got).max()) > 100 * INCREMENTAL_ATOL


def test_an_incremental_exit_feeds_only_its_new_frames_and_never_reads_past_the_video():
  _, _, _, b, plan, view = plan_and_view("nextvlad")
  n = b["num_frames"]
  previous = 0
  for e, k in enumerate(EXITS):
    frames, count, _ = plan.exit_frames(view, e)
    assert frames.shape[1] == k - previous
    np.testing.assert_array_equal(np.asarray(count), np.clip(n - previous, 0, k - previous))
    previous = k
  np.testing.assert_array_equal(plan.frames_read(n, np.full(len(n), 2)), np.minimum(n, 12))
  assert (plan.frames_read(n, np.arange(len(n)) % 3) <= n).all()


def test_the_host_view_of_the_coarse_to_fine_frames_equals_the_device_view():
  """The student-only input path decodes the k_max coarse-to-fine frames in time order; its view (slot
  ranks from the true lengths) equals the view cut out of all frames."""
  _, _, _, b, plan, view = plan_and_view("nextvlad")
  n = jnp.asarray(b["num_frames"])
  from fewframes_jax.sampling import rules  # pylint: disable=g-import-not-at-top
  idx, nk = rules.frame_indices_np(b["num_frames"], test_anyk.K_MAX, "coarse_to_fine", max_frames=test_anyk.T)
  host_frames = np.take_along_axis(b["frames"], idx[..., None], axis=1)
  host_frames[np.arange(test_anyk.K_MAX)[None, :] >= nk[:, None]] = 0
  host = early_exit.view_from_preselected(dequantize(jnp.asarray(host_frames), jnp.asarray(nk)), n, test_anyk.T)
  for a, c in zip(host, view):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(c))


@pytest.mark.parametrize("family", ["nextvlad", "hrnn"])
def test_waves_equal_one_video_at_a_time_and_the_offline_outputs(family):
  _, _, variables, _, plan, view = plan_and_view(family)
  outputs = np.stack([np.asarray(p) for p in jax.jit(plan.outputs)(variables, view)], axis=1)  # [N, E, C]
  # a threshold between the videos' confidences at the first exits, so that videos stop at each exit
  confidence = outputs.max(axis=-1)[:, :-1]
  policy = specs.ExitPolicy("confident", float(np.median(confidence)))
  arrays = [np.asarray(a) for a in view]
  cache = {}
  waves = early_exit.run_waves(plan, policy, variables, *arrays, batch_size=4, step_cache=cache)
  expected_exit = np.where((confidence >= policy.threshold).any(1), np.argmax(confidence >= policy.threshold, 1), 2)
  np.testing.assert_array_equal(waves.exit_index, expected_exit)
  assert len(set(waves.exit_index.tolist())) > 1
  # the outputs tell videos apart (a video answered with another's frames or carry would show)
  for i in range(len(LENGTHS)):
    for j in range(i):
      assert np.abs(outputs[i] - outputs[j]).max(-1).min() > 100 * INCREMENTAL_ATOL, (i, j)
  np.testing.assert_allclose(waves.probabilities, outputs[np.arange(len(LENGTHS)), waves.exit_index],
                             atol=INCREMENTAL_ATOL)
  one_by_one = early_exit.run_waves(plan, policy, variables, *arrays, batch_size=1)
  np.testing.assert_array_equal(one_by_one.exit_index, waves.exit_index)
  np.testing.assert_allclose(one_by_one.probabilities, waves.probabilities, atol=INCREMENTAL_ATOL)
  survivors = [len(LENGTHS), int((waves.exit_index >= 1).sum()), int((waves.exit_index == 2).sum())]
  assert waves.batches_per_exit == [-(-s // 4) for s in survivors]  # survivors compacted into full batches
  np.testing.assert_array_equal(waves.frames_read, np.minimum(np.asarray(LENGTHS), np.asarray(EXITS)[waves.exit_index]))


def test_waves_over_no_videos_return_empty_results():
  _, _, variables, _, plan, view = plan_and_view("nextvlad")
  waves = early_exit.run_waves(plan, specs.ExitPolicy("confident", 0.5), variables,
                               *[np.asarray(a)[:0] for a in view], batch_size=4)
  assert waves.probabilities.shape == (0, test_anyk.C) and waves.probabilities.dtype == np.float32
  assert waves.exit_index.shape == waves.frames_read.shape == (0,) and waves.batches_per_exit == [0, 0, 0]


def test_policies_and_rule_scores():
  assert specs.ExitPolicy.parse("") is None
  assert specs.ExitPolicy.parse("stable:0.9") == specs.ExitPolicy("stable", 0.9)
  for bad in ("stable", "often:0.5", "gate:x"):
    with pytest.raises(ValueError, match="rule"):
      specs.ExitPolicy.parse(bad)
  probs = jnp.asarray(np.random.default_rng(0).random((3, 30)), jnp.float32)
  same = early_exit.exit_scores("stable", probs, probs, 1, 3)
  np.testing.assert_allclose(np.asarray(same), 1.0)
  assert np.isneginf(np.asarray(early_exit.exit_scores("stable", probs, None, 0, 3))).all()
  np.testing.assert_allclose(np.asarray(early_exit.exit_scores("confident", probs, None, 0, 3)), probs.max(-1))
  ids_a = jnp.array([[0, 1, 2, 3]])
  ids_b = jnp.array([[3, 9, 1, 8]])
  assert float(early_exit.top_k_overlap(ids_a, ids_b)[0]) == 0.5
