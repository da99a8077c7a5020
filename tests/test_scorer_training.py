"""How the learned selector trains (fewframes_jax/sampling/scorer_training.py and its train step): the
teacher's single-frame targets, the label judge's targets and loss, and the ranking loss against naive
references, a step that trains the scorer and never the frozen teacher (every training mode), the label
judge without a teacher, the label-judged scorer choosing an event over an intro, the config checks, and a
saved run whose restored selector picks the same frames."""
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import runs_testlib as lib
import setup_testlib
from configs import base
from fewframes_jax import checkpoint as ckpt_lib
from fewframes_jax import specs
from fewframes_jax import run_config
from fewframes_jax import inference
from fewframes_jax.train import student_loss
from fewframes_jax.train import trainer as train_lib
from fewframes_jax.train import run_setup
from fewframes_jax.data.quantization import dequantize
from fewframes_jax.sampling import content
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
  setup = run_setup.make_setup(specs.RunSpec.from_config(config))
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
  setup = run_setup.make_setup(specs.RunSpec.from_config(config))
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
  setup = run_setup.make_setup(specs.RunSpec.from_config(config))
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
  setup = run_setup.make_setup(specs.RunSpec.from_config(config))
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
  setup, state = setup_testlib.setup_run(config)
  state, _ = jax.jit(lambda s, b: train_lib.train_step(s, b, setup=setup))(state, batch(1))  # a trained scorer
  manager = ckpt_lib.make_manager(str(tmp_path))
  ckpt_lib.save(manager, state, specs.RunSpec.from_config(config), force=True)
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
  want = inference.Network("student", setup.student_forward, live, specs.RunSpec.from_config(config))
  np.testing.assert_array_equal(np.asarray(network.probabilities(b["frames"], b["num_frames"])),
                                np.asarray(want.probabilities(b["frames"], b["num_frames"])))


def test_label_targets_and_judge_loss_against_loops():
  rng = np.random.default_rng(5)
  b, m, d, c = 3, 4, 5, 6
  c_ = c
  params = {"kernel": rng.normal(size=(d, c)).astype(np.float32), "bias": rng.normal(size=c).astype(np.float32)}
  frames = rng.normal(size=(b, m, d)).astype(np.float32)
  valid = np.array([[1, 1, 1, 1], [1, 1, 0, 0], [1, 1, 1, 0]], bool)
  labels = np.zeros((b, c), np.float32)
  labels[0, [1, 3]] = labels[1, 2] = labels[2, 0] = 1
  weights = np.array([1.0, 1.0, 0.0], np.float32)  # the third video is a padding row
  drawn = scorer_training.Draw(jnp.zeros((b, m), jnp.int32), jnp.asarray(valid), jnp.asarray(frames))
  (_, _, y), loss = scorer_training.label_targets(params, drawn, jnp.asarray(labels), jnp.asarray(weights))
  total = count = 0.0
  for i in range(b):
    probs = [1 / (1 + np.exp(-(frames[i, j] @ params["kernel"] + params["bias"]))) for j in range(m)]
    log_p = np.log(np.clip(np.array(probs), 1e-6, 1))                          # [m, C]
    mean = log_p[valid[i]].mean(axis=0)
    for j in range(m):
      want = max(log_p[j, c] - mean[c] for c in range(c_) if labels[i, c] > 0) if valid[i, j] else 0.0
      assert float(y[i, j]) == pytest.approx(want, rel=1e-4, abs=1e-5)
    if weights[i] > 0:  # a true class: its most likely drawn frame against 1; the others: every frame against 0
      logits = np.array([frames[i, j] @ params["kernel"] + params["bias"] for j in range(m) if valid[i, j]])
      total += sum(np.log1p(np.exp(-logits[:, c].max())) if labels[i, c] else np.log1p(np.exp(logits[:, c])).mean()
                   for c in range(c_))
      count += 1
  assert float(loss) == pytest.approx(total / count, rel=1e-4)
  # A video without labels gets 0 for every frame.
  none = scorer_training.label_surprise(jnp.full((1, 2, c), 0.3), jnp.zeros((1, c)), jnp.ones((1, 2), bool))
  np.testing.assert_array_equal(np.asarray(none), 0.0)


def test_a_labels_step_trains_judge_and_scorer_without_a_teacher():
  """selector.train=labels runs in student_only mode: its judge and its scorer move, and the judge never
  reaches the student's evaluated variables."""
  config = selector_config("nextvlad", mode="student_only", train="labels")
  run_config.validate(run_config.resolve(config))
  setup = run_setup.make_setup(specs.RunSpec.from_config(config))
  state = run_setup.init_state(setup, jax.random.PRNGKey(0))
  judge = state.student.params[scorer_training.JUDGE_KEY]
  assert judge["kernel"].shape == (16, C)
  new, metrics = jax.jit(lambda s, b: train_lib.train_step(s, b, setup=setup))(state, batch())
  assert {"student/judge", "student/selector", "student/ce"} <= set(metrics)
  moved = jax.tree.map(lambda a, b: float(jnp.abs(a - b).max()), state.student.params, new.student.params)
  assert moved[scorer_training.JUDGE_KEY]["kernel"] > 0 and moved[scorer_training.JUDGE_KEY]["bias"] > 0
  assert all(moved[learned.SELECTOR_KEY][layer]["kernel"] > 0 for layer in ("project", "hidden", "score"))
  assert scorer_training.JUDGE_KEY not in train_lib.eval_variables(new)["student"]["params"]


def _intro_and_event_videos(rng, n, t=12, d=8, c=4):
  """Hand-made videos: frames 0-1 are an intro every class shares (the frames farthest from each video's
  mean), one frame at a random place from 3 to t-1 carries the video's class (a class direction, weaker
  than the intro), the rest is noise. -> (frames f32[n, t, d], labels f32[n, c], event position i32[n])."""
  directions = np.eye(d, dtype=np.float32)[:c] * 2.0
  intro = np.full(d, -1.5, np.float32)
  frames = rng.normal(scale=0.3, size=(n, t, d)).astype(np.float32)
  classes = rng.integers(0, c, size=n)
  events = rng.integers(3, t, size=n)
  frames[:, :2] += intro
  frames[np.arange(n), events] += directions[classes]
  return frames, np.eye(c, dtype=np.float32)[classes], events


def test_the_label_judged_scorer_picks_the_event_not_the_intro():
  """On videos made of an intro shared by every class plus one class event, far-from-mean picks the
  intro; the scorer trained by its label judge (from the far-from-mean prior, so untrained it picks the
  intro too) learns to pick the event."""
  t, d, c, m = 12, 8, 4, 6
  rng = np.random.default_rng(0)
  scorer = learned.FrameScorer(feature_sizes=(d,), streams="all", prior="far_from_mean")
  params = {"scorer": learned.init_params(scorer, jax.random.PRNGKey(0), frames=t),
            "judge": scorer_training.init_judge(jax.random.PRNGKey(1), d, c)}
  opt = optax.adam(3e-2)
  opt_state = opt.init(params)
  lengths = jnp.full([32], t, jnp.int32)

  @jax.jit
  def step(params, opt_state, frames, labels, key):
    def loss(p):
      drawn = scorer_training.draw(key, frames, lengths, m)
      (pos, valid, y), judge_loss = scorer_training.label_targets(p["judge"], drawn, labels, jnp.ones([32]))
      learned_part = scorer.apply({"params": p["scorer"]}, frames, lengths) - learned.prior_scores(scorer, frames, lengths)
      scores = jnp.take_along_axis(learned_part, pos, axis=1)  # as the train step: the judge teaches the residual
      return scorer_training.ranking_loss(scores, y, valid, jnp.ones([32])) + judge_loss
    grads = jax.grad(loss)(params)
    updates, opt_state = opt.update(grads, opt_state)
    return optax.apply_updates(params, updates), opt_state

  for i in range(300):
    frames, labels, _ = _intro_and_event_videos(rng, 32, t, d, c)
    params, opt_state = step(params, opt_state, jnp.asarray(frames), jnp.asarray(labels), jax.random.PRNGKey(i))
  frames, _, events = _intro_and_event_videos(np.random.default_rng(1), 64, t, d, c)
  frames, n = jnp.asarray(frames), jnp.full([64], t, jnp.int32)
  far, _ = content.far_from_mean_indices(frames, n, 1)
  assert np.mean(np.asarray(far[:, 0]) < 2) > 0.9  # the trap: far-from-mean takes the intro
  chosen, _ = learned.learned_indices(scorer.apply({"params": params["scorer"]}, frames, n), n, 1)
  assert np.mean(np.asarray(chosen[:, 0]) == events) > 0.9
