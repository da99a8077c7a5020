"""Tests for fewframes_jax.anyk (one student for every budget): the sandwich rule, a budget-k forward
equal to a forward on exactly those k frames for every family, the averaged loss of a train step, the
config checks, and a saved any-k run restored at every budget."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import runs_testlib as lib
import setup_testlib
from configs import base
from fewframes_jax import models
from fewframes_jax import specs
from fewframes_jax import checkpoint as ckpt_lib
from fewframes_jax import run_config
from fewframes_jax import inference
from fewframes_jax.train import student_loss
from fewframes_jax.train import trainer as train_lib
from fewframes_jax.data.quantization import dequantize
from fewframes_jax.sampling import nested

pytestmark = pytest.mark.usefixtures("fast_compile")

T, C, K_MIN, K_MAX = 24, 6, 3, 12


def anyk_config(family="hrnn", mode="parallel", order="coarse_to_fine", **fields):
  c = base.experiment(family, k=K_MAX, arg=f"tiny,mode={mode},k_min={K_MIN},sampling={order}")
  c.data.max_frames, c.data.num_classes, c.data.feature_sizes = T, C, (12, 4)
  c.data.batch_size, c.data.eval_pattern = 4, "unused"
  c.teacher.hrnn.num_blocks = 4
  c.student.hrnn.num_blocks = 2  # as configs_lib.resolve derives it: ceil(12 / 6) = 2 blocks of 6
  for key, value in fields.items():
    lib.set_field(c, key, value)
  return c


def batch(seed=0, lengths=(T, 10, 4, 0)):
  return lib.random_batch(seed, lengths, max_frames=T, feature_dim=16, num_classes=C)


def test_the_sandwich_rule_draws_the_smallest_the_largest_and_random_budgets():
  b = specs.Budgets(k_min=6, k_max=30, per_step=5, order="coarse_to_fine")
  draws = np.stack([np.asarray(b.sample(jax.random.PRNGKey(i))) for i in range(50)])
  assert (draws[:, 0] == 6).all() and (draws[:, 1] == 30).all()
  assert draws.min() >= 6 and draws.max() <= 30 and len(np.unique(draws[:, 2:])) > 10
  with pytest.raises(ValueError, match="sandwich"):
    specs.Budgets(k_min=6, k_max=30, per_step=1, order="coarse_to_fine")
  with pytest.raises(ValueError, match="nested"):
    specs.Budgets(k_min=6, k_max=30, per_step=2, order="uniform")
  assert specs.RunSpec.from_config(base.experiment("hrnn", k=30, arg="tiny")).student.budgets is None
  assert specs.RunSpec.from_config(anyk_config()).student.budgets == specs.Budgets(
      K_MIN, K_MAX, 4, "coarse_to_fine")  # configs/base.py's budgets_per_step


@pytest.mark.parametrize("family,order", [("hrnn", "coarse_to_fine"), ("lstm", "coarse_to_fine"),
                                          ("netvlad", "far_from_mean"), ("nextvlad", "coarse_to_fine")])
def test_a_budget_k_forward_equals_a_forward_on_exactly_those_k_frames(family, order):
  """The k_max-slot forward the trainer runs at budget k (padding after the k frames) equals the scorer
  at budget k, which feeds exactly the k frames (H-RNN: whole blocks of the k_max student's length)."""
  config = anyk_config(family, order=order)
  setup, state = setup_testlib.setup_run(config)
  variables = train_lib.eval_variables(state)["student"]
  b = batch()
  n = jnp.asarray(b["num_frames"])
  frames = dequantize(jnp.asarray(b["frames"]), n)
  padded_forward = jax.jit(lambda k: setup.student_model.apply(
      variables, *nested.select_budget(frames, n, k, order, K_MAX)[:2], train=False).probabilities)
  for k in (K_MIN, 7, K_MAX):
    forward = inference.student_forward(specs.RunSpec.from_config(config), setup.student_model, k)
    assert forward.selection.k == k
    exact, nk_exact = forward.selection.select(frames, n, None)
    assert exact.shape[1] == (6 * -(-k // 6) if family == "hrnn" else k)
    np.testing.assert_array_equal(np.asarray(nk_exact), np.minimum(b["num_frames"], k))
    got = jax.jit(forward.apply)(variables, jnp.asarray(b["frames"]), n).probabilities
    np.testing.assert_allclose(np.asarray(got), np.asarray(padded_forward(k)), atol=2e-6)


def test_hrnn_blocks_follow_the_budget_with_a_fixed_block_length():
  model = setup_testlib.setup_run(anyk_config("hrnn"))[0].student_model
  assert model.encoder.num_blocks == 2 and models.hrnn_block_length(model, K_MAX) == 6
  for k, blocks in ((3, 1), (6, 1), (7, 2), (12, 2)):
    at, slots = models.at_budget(model, k, K_MAX)
    assert (at.encoder.num_blocks, slots) == (blocks, 6 * blocks)
  with pytest.raises(ValueError, match="budget"):
    models.at_budget(model, K_MAX + 1, K_MAX)


def test_the_step_loss_is_the_mean_of_the_budgets_losses():
  config = anyk_config("nextvlad", **{"student.budgets_per_step": 3})
  setup, state = setup_testlib.setup_run(config)
  b = jax.tree.map(jnp.asarray, batch(1))
  n = b["num_frames"]
  frames = dequantize(b["frames"], n)
  selections = student_loss.budget_selections(setup, frames, n, jax.random.PRNGKey(3))
  assert [int(s[1].max()) for s in selections[:2]] == [K_MIN, K_MAX]
  teacher_out = setup.teacher_model.apply(state.teacher.variables, frames, n, train=False)
  args = dict(student=state.student, teacher=state.teacher, teacher_out=teacher_out, labels=b["labels"].astype(jnp.float32),
              weights=jnp.ones([4]), rng=jax.random.PRNGKey(4))
  over_budgets = jax.jit(lambda params: student_loss.loss_over_budgets(
      setup, params, selections=selections, **args))
  one_budget = jax.jit(lambda params, i: student_loss.loss_terms(
      setup, params, selected=selections[i], **dict(args, rng=jax.random.fold_in(args["rng"], i)))[0],
                       static_argnums=1)
  total, (terms, _) = over_budgets(state.student.params)
  one = [float(one_budget(state.student.params, i)) for i in range(len(selections))]
  np.testing.assert_allclose(float(total), np.mean(one), rtol=1e-6)
  assert set(terms) == {"ce", "rep", "pred"}
  new_state, metrics = jax.jit(lambda s, bt: train_lib.train_step(s, bt, setup=setup))(state, b)
  assert np.isfinite(float(metrics["student/loss"])) and int(new_state.step) == 1


def test_a_learned_order_student_trains_its_scorer_and_reads_its_top_k_at_every_budget():
  """sampling=learned with k_min: the student's scorer ranks the frames once per step (its ranking loss
  on the teacher's targets trains it), every budget takes the first k of that ranking; at inference the
  budget-k student reads the scorer's top k."""
  config = anyk_config("lstm", order="learned")
  setup, state = setup_testlib.setup_run(config)
  assert setup.budgets.order == "learned" and "selector" in state.student.params
  variables = train_lib.eval_variables(state)["student"]
  b = jax.tree.map(jnp.asarray, batch(2))
  n = b["num_frames"]
  frames = dequantize(b["frames"], n)
  scores = setup.selection.scorer.apply({"params": state.student.params["selector"]}, frames, n)
  ranks = nested.frame_ranks(frames, n, "learned", scores=scores)
  model_variables, _ = inference.split_selector(variables)
  for k in (K_MIN, 7, K_MAX):
    forward = inference.student_forward(specs.RunSpec.from_config(config), setup.student_model, k)
    _, _, idx = forward.selection.select(frames, n, None, return_indices=True,
                                        selector_params=state.student.params["selector"])
    want_idx, nk = nested.budget_indices(ranks, n, k, k)
    np.testing.assert_array_equal(np.asarray(idx), np.asarray(want_idx))
    got = jax.jit(forward.apply)(variables, b["frames"], n).probabilities
    want = setup.student_model.apply(model_variables, *nested.select_budget(frames, n, k, "learned", K_MAX,
                                                                            ranks=ranks)[:2], train=False)
    np.testing.assert_allclose(np.asarray(got), np.asarray(want.probabilities), atol=2e-6)
    assert np.asarray(nk).tolist() == np.minimum(np.asarray(n), k).tolist()
  new_state, metrics = jax.jit(lambda s, bt: train_lib.train_step(s, bt, setup=setup))(state, b)
  assert np.isfinite(float(metrics["student/loss"])) and float(metrics["student/selector"]) > 0
  moved = [not np.array_equal(x, y) for x, y in zip(jax.tree.leaves(new_state.student.params["selector"]),
                                                    jax.tree.leaves(state.student.params["selector"]))]
  assert any(moved)  # the ranking loss trains the scorer
  end_to_end = anyk_config("lstm", order="learned", **{"student.selector.train": "end_to_end"})
  with pytest.raises(run_config.ConfigError, match="ranking-trained scorer"):
    run_config._validate_budgets(end_to_end)  # pylint: disable=protected-access
  by_labels = anyk_config("lstm", order="learned", **{"student.selector.train": "labels"})
  run_config._validate_budgets(by_labels)  # pylint: disable=protected-access  (its judge ranks the frames)


@pytest.mark.parametrize("fields,message", [
    ({"student.k_min": 13}, "k_min=13"),
    ({"student.sampling": "uniform"}, "nested order"),
    ({"student.budget": 40}, "budget=40"),
    ({"student.exits": "3,3,12"}, "strictly increasing"),
    ({"student.exits": "2,12"}, "strictly increasing"),
    ({"student.exit": "often:1"}, "rule"),
])
def test_invalid_any_k_settings_name_the_field(fields, message):
  config = anyk_config("hrnn")
  for key, value in fields.items():
    lib.set_field(config, key, value)
  with pytest.raises(run_config.ConfigError, match=message):
    run_config._validate_budgets(config)  # pylint: disable=protected-access


def test_a_fixed_k_student_takes_no_budget_and_no_exit():
  config = base.experiment("hrnn", k=10, arg="tiny")
  config.student.budget = 6
  with pytest.raises(run_config.ConfigError, match="only an any-k student"):
    run_config._validate_budgets(config)  # pylint: disable=protected-access
  config.student.budget, config.student.exit = None, "stable:0.9"
  with pytest.raises(run_config.ConfigError, match="early exit needs an any-k student"):
    run_config._validate_budgets(config)  # pylint: disable=protected-access


def test_a_saved_any_k_run_restored_gives_the_same_outputs_at_every_budget(tmp_path):
  config = anyk_config("hrnn")
  setup, state = setup_testlib.setup_run(config)
  manager = ckpt_lib.make_manager(str(tmp_path))
  ckpt_lib.save(manager, state, specs.RunSpec.from_config(config), force=True)
  manager.wait_until_finished()
  restored = ckpt_lib.restore(str(tmp_path))
  b = batch(2)
  live = train_lib.eval_variables(state)["student"]
  for k in (K_MIN, 8, K_MAX):
    net = restored.network("student", budget=k)
    assert net.forward.selection.k == k and net.frames_seen == k
    spec = specs.RunSpec.from_config(config)
    want = inference.Network("student", inference.student_forward(spec, setup.student_model, k), live, spec)
    np.testing.assert_array_equal(np.asarray(net.probabilities(b["frames"], b["num_frames"])),
                                  np.asarray(want.probabilities(b["frames"], b["num_frames"])))
  assert restored.network("student").forward.selection.k == K_MAX  # the default budget: the largest
