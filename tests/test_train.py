"""Train-step semantics: what each mode trains, what it freezes, and what it shares."""
import jax
import numpy as np
import pytest

from configs import base
import setup_testlib
from fewframes_jax import checkpoint as ckpt_lib
from fewframes_jax import specs
from fewframes_jax import run_config
from fewframes_jax.evaluation import evaluate as eval_lib
from fewframes_jax.sampling import rules
from fewframes_jax.train import student_loss
from fewframes_jax.train import trainer as train_lib
from fewframes_jax.data.quantization import dequantize

NUM_CLASSES = 6
T = 12


pytestmark = pytest.mark.usefixtures("fast_compile")


_STEPS = {}


def step_fn(setup):
  """The jitted train step of `setup` (one compile per TrainSetup, instead of op-by-op dispatch)."""
  if id(setup) not in _STEPS:
    _STEPS[id(setup)] = (setup, jax.jit(lambda state, batch: train_lib.train_step(state, batch, setup=setup)))
  return _STEPS[id(setup)][1]


def eval_fn(setup):
  """The eval computation of the trainer and of a saved run: (state, batch, rng) -> outputs."""
  step = eval_lib.make_eval_step(setup.forwards())
  return lambda state, batch, rng: step(train_lib.eval_variables(state), batch, rng)


def tiny_config(mode="parallel", family="nextvlad", student="", **loss):
  c = base.experiment(family, k=4, arg=f"tiny,mode={mode}" + (f",student={student}" if student else ""))
  c.data.max_frames = T
  c.data.num_classes = NUM_CLASSES
  c.data.feature_sizes = (12, 4)
  c.data.batch_size = 4
  c.data.eval_pattern = "unused"
  c.teacher.hrnn.num_blocks = 3
  c.student.hrnn.num_blocks = 2
  c.optim.learning_rate = 0.01
  c.loss.update(loss)
  return c


def make_batch(seed=0, batch=4):
  rng = np.random.default_rng(seed)
  num_frames = np.array([T, 7, 1, 0][:batch], np.int32)
  frames = rng.integers(0, 256, size=(batch, T, 16), dtype=np.uint8)
  frames[np.arange(T)[None, :] >= num_frames[:, None]] = 0
  labels = np.zeros((batch, NUM_CLASSES), np.uint8)
  labels[np.arange(batch), rng.integers(0, NUM_CLASSES, batch)] = 1
  return {"frames": frames, "num_frames": num_frames, "labels": labels, "valid": np.ones([batch], bool)}


def setup(config, seed=0):
  return setup_testlib.setup_run(config, seed=seed)


def tree_allclose(a, b, **kw):
  return all(np.allclose(x, y, **kw) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


@pytest.mark.parametrize("family", ["nextvlad", "hrnn"])
def test_parallel_teacher_update_equals_teacher_only_step(family):
  batch = make_batch()
  nets_p, state_p = setup(tiny_config("parallel", family, rep_intermediate=1.0 if family == "hrnn" else 0.0))
  nets_t, state_t = setup(tiny_config("teacher", family))
  assert tree_allclose(state_p.teacher.params, state_t.teacher.params, rtol=0, atol=0)
  for _ in range(2):
    state_p, metrics_p = step_fn(nets_p)(state_p, batch)
    state_t, metrics_t = step_fn(nets_t)(state_t, batch)
  assert float(metrics_p["student/loss"]) > 0
  np.testing.assert_allclose(metrics_p["teacher/ce"], metrics_t["teacher/ce"], rtol=1e-6)
  assert tree_allclose(state_p.teacher.params, state_t.teacher.params, rtol=1e-5, atol=1e-7)
  # The teacher did move, so the comparison above is not vacuous.
  _, fresh = setup(tiny_config("teacher", family))
  assert not tree_allclose(state_t.teacher.params, fresh.teacher.params, rtol=0, atol=1e-6)


def test_share_classifier_keeps_one_classifier():
  _, shared = setup(tiny_config("parallel"))
  assert "head" in shared.teacher.params and "head" not in shared.student.params
  config = tiny_config("parallel")
  config.share_classifier = False
  _, separate = setup(config)
  assert "head" in separate.student.params
  n_shared = sum(x.size for x in jax.tree.leaves(shared.student.params))
  n_separate = sum(x.size for x in jax.tree.leaves(separate.student.params))
  n_head = sum(x.size for x in jax.tree.leaves(separate.student.params["head"]))
  assert n_separate - n_shared == n_head > 0


def test_shared_head_is_the_teachers():
  """The student's probabilities are the teacher's head applied to the student's representation."""
  nets, state = setup(tiny_config("parallel"))
  batch = make_batch()
  out = eval_fn(nets)(state, batch, jax.random.PRNGKey(0))

  @jax.jit  # one compile instead of one per operation
  def head_of_student(state, frames, num_frames):
    fk, nk = rules.sample_frames(dequantize(frames, num_frames), num_frames, 4, "uniform")
    rep, _ = nets.student_model.apply(state.student.variables, fk, nk, train=False,
                                      method=nets.student_model.encode)
    return nets.teacher_model.apply(state.teacher.variables, rep, train=False, method=nets.teacher_model.classify)

  probs = head_of_student(state, batch["frames"], batch["num_frames"])
  k = out["student"]["scores"].shape[1]
  expected = -np.sort(-np.asarray(probs), axis=-1)[:, :k]
  np.testing.assert_allclose(-np.sort(-np.asarray(out["student"]["scores"]), axis=-1), expected, rtol=1e-5)


def save_run(workdir, config, state):
  manager = ckpt_lib.make_manager(workdir)
  ckpt_lib.save(manager, state, specs.RunSpec.from_config(config), metrics={"gap": 0.5}, force=True)
  manager.wait_until_finished()
  manager.close()


def test_serial_teacher_is_frozen(tmp_path):
  teacher_config = tiny_config("teacher")
  nets_t, state_t = setup(teacher_config)
  state_t, _ = step_fn(nets_t)(state_t, make_batch())
  save_run(str(tmp_path / "teacher"), teacher_config, state_t)

  config = tiny_config("serial")
  config.teacher_workdir = str(tmp_path / "teacher")
  nets, state = setup(config)
  assert state.teacher.opt_state is None
  before = jax.tree.map(np.array, state.teacher.variables)
  assert tree_allclose(before["params"], state_t.teacher.params, rtol=0, atol=0)
  student_before = jax.tree.map(np.array, state.student.params)
  for seed in range(3):
    state, metrics = step_fn(nets)(state, make_batch(seed))
  after = jax.tree.map(np.array, state.teacher.variables)
  for x, y in zip(jax.tree.leaves(before), jax.tree.leaves(after)):
    np.testing.assert_array_equal(x, y)
  assert not tree_allclose(student_before, state.student.params, rtol=0, atol=1e-7)
  assert set(metrics) >= {"student/ce", "student/rep", "student/pred", "student/loss"}


def test_serial_rejects_mismatched_teacher(tmp_path):
  teacher_config = tiny_config("teacher")
  _, state_t = setup(teacher_config)
  save_run(str(tmp_path / "teacher"), teacher_config, state_t)
  config = tiny_config("serial")
  config.teacher_workdir = str(tmp_path / "teacher")
  config.teacher.nextvlad.hidden_size = 32
  config.student.nextvlad.hidden_size = 32
  with pytest.raises(run_config.ConfigError, match="does not match config.teacher"):
    run_config.validate(config)


def test_cross_family_projection_belongs_to_student():
  nets, state = setup(tiny_config("parallel", "nextvlad", student="hrnn"))
  assert not nets.shared_head
  proj = state.student.params["projection"]["kernel"]
  assert proj.shape == (4 * 16, 16)  # H-RNN [c1,h1,c2,h2] of 16 cells -> NeXtVLAD hidden 16
  before = np.array(proj)
  state, metrics = step_fn(nets)(state, make_batch())
  assert np.isfinite(float(metrics["student/rep"]))
  assert not np.allclose(before, state.student.params["projection"]["kernel"])


def test_student_only_has_no_teacher_and_trains_on_ce():
  nets, state = setup(tiny_config("student_only"))
  assert state.teacher is None and "head" in state.student.params
  state, metrics = step_fn(nets)(state, make_batch())
  assert {k for k in metrics if k.startswith("student/")} == {"student/ce", "student/loss"}
  np.testing.assert_allclose(metrics["student/ce"], metrics["student/loss"], rtol=1e-6)


def test_eval_step_is_batch_order_invariant():
  nets, state = setup(tiny_config("parallel"))
  batch = make_batch()
  evaluate = eval_fn(nets)
  out1 = evaluate(state, batch, jax.random.PRNGKey(0))
  perm = np.array([2, 0, 3, 1])
  out2 = evaluate(state, {k: v[perm] for k, v in batch.items()}, jax.random.PRNGKey(0))
  for net in ("teacher", "student"):
    np.testing.assert_allclose(np.asarray(out1[net]["scores"])[perm], out2[net]["scores"], rtol=1e-5, atol=1e-6)


def test_ensemble_of_teachers_from_two_families(tmp_path):
  """Serial distillation from a NeXtVLAD and an H-RNN teacher: averaged predictions, one projection each."""
  workdirs = []
  for family in ("nextvlad", "hrnn"):
    c = tiny_config("teacher", family)
    _, state_t = setup(c)
    save_run(str(tmp_path / family), c, state_t)
    workdirs.append(str(tmp_path / family))
  config = tiny_config("serial", "nextvlad")
  config.teacher_workdirs = ",".join(workdirs)
  config.share_classifier = False
  nets, state = setup(config)
  assert sorted(state.teacher.params) == ["members_0", "members_1"]
  # student NeXtVLAD (16) -> [NeXtVLAD 16, H-RNN 4 x 16]
  assert state.student.params["projection"]["kernel"].shape == (16, 16 + 64)
  batch = make_batch()

  @jax.jit  # one compile instead of one per operation
  def ensemble_and_members(teacher, frames, num_frames):
    frames = dequantize(frames, num_frames)
    members = [m.apply({"params": teacher.params[f"members_{i}"], "batch_stats": teacher.batch_stats[f"members_{i}"]},
                       frames, num_frames, train=False) for i, m in enumerate(nets.teacher_model.members)]
    return nets.teacher_model.apply(teacher.variables, frames, num_frames, train=False), members

  ens, members = ensemble_and_members(state.teacher, batch["frames"], batch["num_frames"])
  np.testing.assert_allclose(ens.probabilities, (members[0].probabilities + members[1].probabilities) / 2,
                             rtol=1e-5)
  state, metrics = step_fn(nets)(state, batch)
  assert np.isfinite(float(metrics["student/loss"]))
  config.share_classifier = True
  with pytest.raises(run_config.ConfigError, match="no single classifier to share"):
    run_config.validate(config)


def test_shared_head_runs_in_inference_mode_for_the_student_in_training():
  """Parallel mode, WILLOW's NetVLAD head (probability gating has a batch norm): the student trains
  through the teacher's head with the teacher's running statistics, the head it is evaluated with,
  not with the student batch's statistics (which would change its outputs between train and eval)."""
  setup_, state = setup(tiny_config("parallel", "netvlad"))
  assert setup_.shared_head and "prob_gating_bn" in state.teacher.batch_stats["head"]
  # Running statistics far from any batch's, so that train-mode and inference-mode BN differ clearly.
  state = state.replace(teacher=state.teacher.replace(batch_stats=jax.tree.map(
      lambda x: x + 0.7, state.teacher.batch_stats)))
  batch = make_batch()

  @jax.jit  # one compile instead of one per operation
  def student_and_heads(state, frames, num_frames):
    fk, nk = rules.sample_frames(dequantize(frames, num_frames), num_frames, 4, "uniform")
    rep, _, probs, _ = student_loss.forward(setup_, state.student.params, state.student.batch_stats,
                                            state.teacher, fk, nk, train=True, rng=jax.random.PRNGKey(3))
    head_eval = setup_.teacher_model.apply(state.teacher.variables, rep, train=False,
                                           method=setup_.teacher_model.classify)
    head_train, _ = setup_.teacher_model.apply(state.teacher.variables, rep, train=True, mutable=["batch_stats"],
                                               method=setup_.teacher_model.classify)
    return probs, head_eval, head_train

  probs, head_eval, head_train = student_and_heads(state, batch["frames"], batch["num_frames"])
  np.testing.assert_allclose(probs, head_eval, rtol=1e-6, atol=1e-7)
  assert not np.allclose(probs, head_train, atol=1e-4)  # the batch-statistics head would differ


def test_a_content_aware_selector_trains_and_evaluates_like_any_rule():
  """`student.sampling=far_from_mean` (training-free, content-aware): the step and the eval pick the same
  frames from the dequantized frames, and the student's input path must ship every frame."""
  config = tiny_config("student_only")
  config.student.sampling = "far_from_mean"
  run_config.validate(config)
  setup_, state = setup(config)
  assert setup_.selection.input_frames() is None
  batch = make_batch()
  state, metrics = step_fn(setup_)(state, batch)
  assert np.isfinite(float(metrics["student/ce"]))
  out = eval_fn(setup_)(state, batch, jax.random.PRNGKey(0))
  from fewframes_jax.sampling import methods  # pylint: disable=g-import-not-at-top

  @jax.jit  # one compile instead of one per operation
  def student_on_selected(variables, frames, num_frames):
    fk, nk = methods.select_frames(dequantize(frames, num_frames), num_frames, 4, "far_from_mean")
    return setup_.student_model.apply(variables, fk, nk, train=False).probabilities

  probs = student_on_selected(state.student.variables, batch["frames"], batch["num_frames"])
  np.testing.assert_allclose(np.sort(np.asarray(out["student"]["scores"]), axis=-1),
                             np.sort(np.asarray(probs), axis=-1)[:, -out["student"]["scores"].shape[1]:], rtol=1e-5)
