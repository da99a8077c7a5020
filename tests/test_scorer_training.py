"""How the learned selector trains (fewframes_jax/sampling/scorer_training.py and its train step): the
teacher's single-frame targets and the ranking loss against naive references, a step that trains the
scorer and never the frozen teacher (both training modes), the config checks, and a saved run whose
restored selector picks the same frames."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import runs_testlib as lib
from configs import base
from fewframes_jax import checkpoint as ckpt_lib
from fewframes_jax import run_config
from fewframes_jax import inference
from fewframes_jax.train import student_loss
from fewframes_jax.train import trainer as train_lib
from fewframes_jax.train import run_setup
from fewframes_jax.train import loop
from fewframes_jax.data.quantization import dequantize
from fewframes_jax.sampling import learned
from fewframes_jax.sampling import scorer_training

pytestmark = pytest.mark.usefixtures("fast_compile")

T, C = 24, 6


def selector_config(family="hrnn", mode="serial", train="rank", streams="all", k=5):
  c = base.experiment(family, k=k, arg=f"tiny,mode={mode},sampling=learned")
  c.data.max_frames, c.data.num_classes, c.data.feature_sizes = T, C, (12, 4)
  c.data.batch_size, c.data.eval_pattern = 4, "unused"
  c.teacher.hrnn.num_blocks, c.student.hrnn.num_blocks = 4, 1
  c.student.selector.train, c.student.selector.streams = train, streams
  c.student.selector.frames_per_video = 6
  return c


def batch(seed=0, lengths=(T, 10, 4, 0)):
  b = lib.random_batch(seed, lengths, max_frames=T, feature_dim=16, num_classes=C)
  b["labels"][0, (b["labels"][0].argmax() + 1) % C] = 1  # two labels for the first video
  return b


def test_drawn_frames_are_distinct_real_frames():
  n = jnp.asarray([24, 5, 1, 0], jnp.int32)
  positions, valid = scorer_training.draw_frames(jax.random.PRNGKey(0), n, T, 6)
  positions, valid = np.asarray(positions), np.asarray(valid)
  np.testing.assert_array_equal(valid.sum(1), [6, 5, 1, 0])
  for b, length in enumerate([24, 5, 1, 0]):
    chosen = positions[b][valid[b]]
    assert len(set(chosen.tolist())) == len(chosen) and (chosen < length).all()
  assert set(positions[1][valid[1]].tolist()) == set(range(5))


def test_more_frames_per_video_than_slots_leave_the_rest_invalid():
  """frames_per_video m = 16 > T = 10 (data.max_frames): every real frame once, m - n invalid slots."""
  n = jnp.asarray([10, 4, 0], jnp.int32)
  positions, valid = scorer_training.draw_frames(jax.random.PRNGKey(1), n, 10, 16)
  assert positions.shape == valid.shape == (3, 16)
  positions, valid = np.asarray(positions), np.asarray(valid)
  np.testing.assert_array_equal(valid.sum(1), [10, 4, 0])
  for b, length in enumerate([10, 4, 0]):
    assert sorted(positions[b][valid[b]].tolist()) == list(range(length))
    assert (positions[b][~valid[b]] == 0).all()


@pytest.mark.parametrize("family", ["hrnn", "nextvlad"])
def test_single_frame_probabilities_are_the_teachers_on_a_one_frame_video(family):
  config = selector_config(family)
  setup = run_setup.make_setup(config)
  teacher = run_setup.init_state(setup, jax.random.PRNGKey(0)).teacher
  x = dequantize(jnp.asarray(batch()["frames"][:2, :3]), jnp.asarray([3, 3], jnp.int32))  # [2, 3, D]
  got = jax.jit(lambda x: scorer_training.single_frame_probabilities(setup.teacher_model, teacher.variables, x,
                                                                    jax.random.PRNGKey(1)))(x)
  videos = jnp.zeros([6, T, 16]).at[:, 0].set(x.reshape(6, 16))  # each frame alone in the teacher's full input
  want = jax.jit(lambda v: setup.teacher_model.apply(teacher.variables, v, jnp.ones([6], jnp.int32), train=False,
                                                     rngs={"frames": jax.random.PRNGKey(1)}).probabilities)(videos)
  np.testing.assert_allclose(np.asarray(got).reshape(6, -1), np.asarray(want), rtol=1e-5, atol=1e-6)


def test_label_agreement_and_ranking_loss_against_loops():
  rng = np.random.default_rng(3)
  probs = rng.uniform(0.01, 0.99, (3, 4, C)).astype(np.float32)
  labels = np.zeros((3, C), np.float32)
  labels[0, [1, 4]] = 1
  labels[1, 2] = 1
  y = np.asarray(scorer_training.label_agreement(jnp.asarray(probs), jnp.asarray(labels)))
  for b in range(3):
    for i in range(4):
      pos = np.flatnonzero(labels[b])
      want = np.mean(np.log(probs[b, i, pos])) if len(pos) else 0.0
      assert y[b, i] == pytest.approx(want, rel=1e-5, abs=1e-6)
  scores = rng.normal(size=(3, 4)).astype(np.float32)
  valid = np.array([[1, 1, 1, 1], [1, 1, 0, 0], [1, 0, 0, 0]], bool)
  weights = np.array([1.0, 1.0, 0.0], np.float32)
  num = den = 0.0
  for b in range(3):
    for i in range(4):
      for j in range(4):
        if valid[b, i] and valid[b, j] and y[b, i] > y[b, j]:
          w = np.tanh(y[b, i] - y[b, j]) * weights[b]
          num += w * np.log1p(np.exp(-(scores[b, i] - scores[b, j])))
          den += w
  got = scorer_training.ranking_loss(jnp.asarray(scores), jnp.asarray(y), jnp.asarray(valid), jnp.asarray(weights))
  assert float(got) == pytest.approx(num / den, rel=1e-5)
  # Scores in the targets' order give a lower loss than the reverse order.
  order = jnp.asarray(y)
  assert float(scorer_training.ranking_loss(order, order, jnp.asarray(valid), jnp.asarray(weights))) < \
      float(scorer_training.ranking_loss(-order, order, jnp.asarray(valid), jnp.asarray(weights)))


@pytest.mark.parametrize("family,train", [("hrnn", "rank"), ("nextvlad", "end_to_end"), ("lstm", "rank"),
                                          ("netvlad", "end_to_end")])  # every family, each way twice
def test_a_step_trains_the_scorer_and_never_the_frozen_teacher(family, train):
  config = selector_config(family, mode="serial", train=train)
  setup = run_setup.make_setup(config)
  state = run_setup.init_state(setup, jax.random.PRNGKey(0))
  assert learned.SELECTOR_KEY in state.student.params
  new, metrics = jax.jit(lambda s, b: train_lib.train_step(s, b, setup=setup))(state, batch())
  assert ("student/selector" in metrics) == (train == "rank")
  moved = jax.tree.map(lambda a, b: float(jnp.abs(a - b).max()), state.student.params[learned.SELECTOR_KEY],
                       new.student.params[learned.SELECTOR_KEY])
  assert all(np.isfinite(jax.tree.leaves(moved)))
  # every kernel moves (the score's bias may not: a ranking loss has no gradient for it)
  assert all(moved[layer]["kernel"] > 0 for layer in ("project", "hidden", "score"))
  for a, b in zip(jax.tree.leaves(state.teacher), jax.tree.leaves(new.teacher)):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_a_finetuned_rank_scorer_stays_as_it_is():
  """Stage 2 (finetune: no teacher) trains the student on the frames its rank-trained scorer picks; the
  scorer gets no gradient and stays."""
  config = selector_config("nextvlad", mode="finetune", train="rank")
  setup = run_setup.make_setup(config)
  state = run_setup.init_state(setup, jax.random.PRNGKey(0))
  new, metrics = jax.jit(lambda s, b: train_lib.train_step(s, b, setup=setup))(state, batch())
  assert "student/selector" not in metrics and "student/ce" in metrics
  for a, b in zip(jax.tree.leaves(state.student.params[learned.SELECTOR_KEY]),
                  jax.tree.leaves(new.student.params[learned.SELECTOR_KEY])):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_the_ranking_loss_alone_moves_only_the_scorer():
  """With every student loss weight but the selector's at 0 the student's own parameters get no gradient
  from the scorer's loss (the hard top-k passes none), and the scorer gets one."""
  config = selector_config("hrnn", mode="serial", train="rank")
  config.loss.ce = config.loss.pred = config.loss.rep = 0.0
  config.loss.ce = 1e-30  # combine_student_losses needs one nonzero weight; negligible
  setup = run_setup.make_setup(config)
  state = run_setup.init_state(setup, jax.random.PRNGKey(0))
  b = batch()
  frames = dequantize(jnp.asarray(b["frames"]), jnp.asarray(b["num_frames"]))
  rank = scorer_training.rank_targets(setup.teacher_model, state.teacher.variables, frames,
                                      jnp.asarray(b["num_frames"]), jnp.asarray(b["labels"], jnp.float32),
                                      jax.random.PRNGKey(2), 6)

  def loss(params):
    _, terms = student_loss.learned_selection(setup, params, frames, jnp.asarray(b["num_frames"]), rank,
                                              jnp.ones([4]), jax.random.PRNGKey(3))
    return terms["selector"]

  grads = jax.grad(loss)(state.student.params)
  assert all(float(jnp.abs(g).sum()) == 0 for g in jax.tree.leaves(grads["encoder"]))
  sel = grads[learned.SELECTOR_KEY]
  assert all(float(jnp.abs(sel[layer]["kernel"]).sum()) > 0 for layer in ("project", "hidden", "score"))
  assert float(jnp.abs(sel["score"]["bias"]).sum()) < 1e-6  # a ranking loss cannot see a shift of every score


def test_config_checks():
  ok = run_config.resolve(base.experiment("hrnn", k=10, arg="tiny,mode=parallel,sampling=learned"))
  run_config.validate(ok)
  bad = base.experiment("hrnn", k=10, arg="tiny,mode=student_only,sampling=learned")
  with pytest.raises(run_config.ConfigError, match="learns from the teacher"):
    run_config.validate(run_config.resolve(bad))
  bad.student.selector.train = "end_to_end"
  run_config.validate(run_config.resolve(bad))
  stage2 = base.experiment("hrnn", k=10, arg="tiny,mode=finetune,sampling=learned")
  run_config._validate_selector(run_config.resolve(stage2))  # pylint: disable=protected-access  (rank kept fixed)
  bad.student.selector.streams = "video"
  with pytest.raises(run_config.ConfigError, match="streams"):
    run_config.validate(run_config.resolve(bad))
  unused = base.experiment("hrnn", k=10, arg="tiny,mode=parallel")
  unused.student.selector.streams = "audio"
  with pytest.raises(run_config.ConfigError, match="only sampling='learned'"):
    run_config.validate(run_config.resolve(unused))


def test_a_saved_selector_picks_the_same_frames_after_restore(tmp_path):
  config = selector_config("hrnn", mode="parallel", streams="audio")
  setup, state = loop.setup_run(config)
  state, _ = jax.jit(lambda s, b: train_lib.train_step(s, b, setup=setup))(state, batch(1))  # a trained scorer
  manager = ckpt_lib.make_manager(str(tmp_path))
  ckpt_lib.save(manager, state, config, force=True)
  manager.wait_until_finished()
  network = ckpt_lib.restore(str(tmp_path)).network("student")
  selection = network.forward.selection
  assert selection.learned and selection.scorer.streams == "audio" and selection.k == 5
  live = train_lib.eval_variables(state)["student"]
  b = batch(2)
  x = dequantize(jnp.asarray(b["frames"]), jnp.asarray(b["num_frames"]))
  picks = []
  for variables in (network.variables, live):
    model_vars, sel_params = inference.split_selector(variables)
    assert learned.SELECTOR_KEY not in model_vars["params"] and sel_params is not None
    picks.append(np.asarray(selection.select(x, jnp.asarray(b["num_frames"]), None, return_indices=True,
                                             selector_params=sel_params)[2]))
  np.testing.assert_array_equal(picks[0], picks[1])
  want = inference.Network("student", setup.student_forward, live, config)
  np.testing.assert_array_equal(np.asarray(network.probabilities(b["frames"], b["num_frames"])),
                                np.asarray(want.probabilities(b["frames"], b["num_frames"])))
