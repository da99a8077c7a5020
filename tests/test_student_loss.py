"""Tests for fewframes_jax.train.student_loss: each of the paper's terms gets the right inputs (the student's
forward on exactly its selected frames, the teacher's per-frame states at those frames, the cross-family
projection) and the total weights them; checked against a recomputation with plain `model.apply` calls
and numpy indexing."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import runs_testlib as lib
import setup_testlib
from configs import base
from fewframes_jax import losses
from fewframes_jax.train import student_loss
from fewframes_jax.data.quantization import dequantize

pytestmark = pytest.mark.usefixtures("fast_compile")

T, C, K = 12, 6, 4
WEIGHTS = {"ce": 1.0, "rep": 0.5, "rep_intermediate": 0.25, "pred": 2.0}


def config(teacher, student, weights):
  c = base.experiment(teacher, k=K, arg=f"tiny,mode=parallel,student={student}")
  c.data.max_frames, c.data.num_classes, c.data.feature_sizes = T, C, (12, 4)
  c.data.batch_size, c.data.eval_pattern = 4, "unused"
  c.share_classifier = False
  c.teacher.hrnn.num_blocks, c.student.hrnn.num_blocks = 3, 2
  c.loss.update(weights)
  return c


def naive_terms(setup, state, frames, num_frames, labels, selected, rng):
  """The terms from plain applies of the two models and numpy gathers (no `student_loss` code)."""
  frames_k, num_frames_k, indices = (np.asarray(x) for x in selected)
  np.testing.assert_array_equal(frames_k[0, :K], np.asarray(frames)[0, indices[0]])  # what the student reads
  t = setup.teacher_model.apply(state.teacher.variables, frames, num_frames, train=False)
  s, _ = setup.student_model.apply(state.student.variables, frames_k, num_frames_k, train=True,
                                   mutable=["batch_stats"], rngs={"dropout": rng, "frames": rng})
  s_rep = np.asarray(s.representation)
  if "projection" in state.student.params:
    p = state.student.params["projection"]
    s_rep = s_rep @ np.asarray(p["kernel"]) + np.asarray(p["bias"])
  terms = {"ce": losses.cross_entropy(s.probabilities, labels),
           "rep": np.mean(np.sum((np.asarray(t.representation) - s_rep) ** 2, axis=1)),
           "pred": np.mean(np.sum((np.asarray(t.probabilities) - np.asarray(s.probabilities)) ** 2, axis=1))}
  if t.intermediates is not None and setup.weight("rep_intermediate") > 0:
    t_inter, s_inter = np.asarray(t.intermediates), np.asarray(s.intermediates)
    per_video = [sum(np.sum((t_inter[b, indices[b, j]] - s_inter[b, j]) ** 2) for j in range(num_frames_k[b]))
                 for b in range(len(num_frames_k))]
    terms["rep_intermediate"] = np.mean(per_video)
  return {name: float(v) for name, v in terms.items() if setup.weight(name) > 0}


@pytest.mark.parametrize("teacher,student,weights", [
    ("lstm", "lstm", WEIGHTS),
    ("nextvlad", "hrnn", dict(WEIGHTS, rep_intermediate=0.0)),  # cross-family: L_rep through the projection
])
def test_each_term_takes_the_right_inputs_and_the_total_weights_them(teacher, student, weights):
  setup, state = setup_testlib.setup_run(config(teacher, student, weights))
  assert setup.pred_distance == "mse" and (setup.projection_dim > 0) == (teacher != student)
  b = jax.tree.map(jnp.asarray, lib.random_batch(1, (T, 7, 2, 0), max_frames=T, feature_dim=16, num_classes=C))
  frames = dequantize(b["frames"], b["num_frames"])
  labels = b["labels"].astype(jnp.float32)
  rng, rng_frames = jax.random.PRNGKey(5), jax.random.PRNGKey(6)
  selected = setup.selection.select(frames, b["num_frames"], rng_frames, return_indices=True)
  teacher_out = setup.teacher_model.apply(state.teacher.variables, frames, b["num_frames"], train=False)

  loss_fn = student_loss.make_loss_fn(setup, student=state.student, teacher=state.teacher, teacher_out=teacher_out,
                                      frames=frames, num_frames=b["num_frames"], labels=labels, weights=jnp.ones([4]),
                                      rng=rng, rng_frames=rng_frames)
  total, (terms, _) = jax.jit(loss_fn)(state.student.params)

  expected = naive_terms(setup, state, frames, b["num_frames"], labels, selected, rng)
  assert set(terms) == set(expected) == {name for name, w in weights.items() if w > 0}
  for name, value in expected.items():
    np.testing.assert_allclose(float(terms[name]), value, rtol=2e-5, err_msg=name)
  np.testing.assert_allclose(float(total), sum(weights[n] * v for n, v in expected.items()), rtol=2e-5)
