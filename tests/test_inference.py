"""The one inference path: network variables from a state tree, frame selection, the uint8 forward, the
student-only input path's preselected frames, a restored `Network`, and the bfloat16 weight cast."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import runs_testlib as lib
import setup_testlib
from configs import base
from fewframes_jax import checkpoint as ckpt_lib
from fewframes_jax import inference
from fewframes_jax import specs
from fewframes_jax.sampling import rules
from fewframes_jax.data.quantization import dequantize

pytestmark = pytest.mark.usefixtures("fast_compile")

T, C = 12, 6


def tiny_config(family="nextvlad", **kw):
  c = base.experiment(family, k=4, arg="tiny,mode=parallel")
  c.data.max_frames, c.data.num_classes, c.data.feature_sizes = T, C, (12, 4)
  c.data.eval_pattern = "unused"
  c.teacher.hrnn.num_blocks, c.student.hrnn.num_blocks = 3, 2
  for key, value in kw.items():
    lib.set_field(c, key, value)
  return c


def frames_batch(seed=0, lengths=(T, 7, 3, 0)):
  rng = np.random.default_rng(seed)
  n = np.asarray(lengths, np.int32)
  frames = rng.integers(0, 256, size=(len(n), T, 16), dtype=np.uint8)
  frames[np.arange(T)[None, :] >= n[:, None]] = 0
  return frames, n


def restored_of(config):
  """A `Restored` built from a fresh run's state, as `checkpoint.restore` builds it from disk."""
  setup, state = setup_testlib.setup_run(config)
  tree = {"teacher": state.teacher.variables, "student": state.student.variables}
  return ckpt_lib.Restored(spec=specs.RunSpec.from_config(config), step=0, model=setup.teacher_model,
                           variables=inference.network_variables(tree, "teacher"),
                           student_model=setup.student_model,
                           student_variables=inference.network_variables(tree, "student"), metrics={})


def test_network_variables_give_a_sharing_student_the_teachers_head():
  tree = {"teacher": {"params": {"encoder": {"a": 1}, "head": {"h": 2}}, "batch_stats": {"head": {"m": 3}}},
          "student": {"params": {"encoder": {"a": 4}, "projection": {"k": 5}}, "batch_stats": {}}}
  assert inference.network_variables(tree, "student") == {"params": {"encoder": {"a": 4}, "head": {"h": 2}},
                                                          "batch_stats": {"head": {"m": 3}}}
  assert inference.network_variables(tree, "teacher") == tree["teacher"]
  with pytest.raises(ValueError, match="no teacher"):
    inference.network_variables({"teacher": None, "student": tree["student"]}, "student")
  with pytest.raises(ValueError, match="has no student"):
    inference.network_variables({"teacher": tree["teacher"], "student": None}, "student")
  with pytest.raises(ValueError, match="expected one of"):
    inference.network_variables(tree, "both")


def test_selection_is_the_sampler_and_every_frame_is_a_no_op():
  frames, n = frames_batch()
  x = dequantize(frames, n)
  same, n_same = inference.Selection().select(x, jnp.asarray(n), None)
  assert same is x and n_same is not None and np.array_equal(n_same, n)
  picked, nk = inference.Selection(4, "first_middle_last").select(x, jnp.asarray(n), None)
  expected, expected_nk = rules.sample_frames(x, jnp.asarray(n), 4, "first_middle_last")
  np.testing.assert_array_equal(picked, expected)
  np.testing.assert_array_equal(nk, expected_nk)
  assert inference.Selection(4, "uniform").input_frames() == (4, "uniform")
  assert inference.Selection(4, "random").input_frames() is None  # host draws differ from the device's
  assert inference.Selection().input_frames() is None


def test_scorer_apply_is_dequantize_select_apply():
  restored = restored_of(tiny_config())
  forward = inference.Forward(restored.student_model, inference.Selection(4, "uniform"))
  frames, n = frames_batch()
  got = forward.apply(restored.student_variables, frames, n).probabilities
  x, nk = rules.sample_frames(dequantize(frames, n), jnp.asarray(n), 4, "uniform")
  want = restored.student_model.apply(restored.student_variables, x, nk, train=False).probabilities
  np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7)
  assert got.shape == (4, C) and np.all((np.asarray(got) >= 0) & (np.asarray(got) <= 1))


def test_preselected_frames_from_the_host_give_the_same_scores():
  """The student-only input path decodes the k frames on the host (`sampling.frame_indices_np`); fed to
  the network as preselected, they score exactly as the on-device selection from all frames."""
  network = inference.Network.from_restored(restored_of(tiny_config()), "student")
  frames, n = frames_batch(seed=1)
  indices, nk = rules.frame_indices_np(n, 4, "uniform", max_frames=T)
  picked = np.take_along_axis(frames, indices[..., None], axis=1)
  picked[np.arange(4)[None, :] >= nk[:, None]] = 0
  on_device = network.probabilities(frames, n)
  on_host = network.probabilities(picked, nk, preselected=True)
  np.testing.assert_allclose(on_host, on_device, rtol=1e-6, atol=1e-7)
  # Garbage after num_frames changes nothing (the model contract, through the whole path).
  noisy = frames.copy()
  noisy[np.arange(T)[None, :] >= n[:, None]] = 255
  np.testing.assert_allclose(network.probabilities(noisy, n), on_device, rtol=1e-6, atol=1e-7)


def test_network_from_restored_picks_each_network():
  restored = restored_of(tiny_config())
  teacher, student = (inference.Network.from_restored(restored, w) for w in ("teacher", "student"))
  assert teacher.forward.selection.all_frames and teacher.frames_seen == T
  assert student.forward.selection == inference.Selection(4, "uniform") and student.frames_seen == 4
  no_student = ckpt_lib.Restored(spec=restored.spec, step=3, model=restored.model, variables=restored.variables,
                                 student_model=None, student_variables=None, metrics={})
  with pytest.raises(ValueError, match="has no student"):
    no_student.network("student")


def test_random_frame_resampling_runs_and_is_deterministic_at_inference():
  """WILLOW's `random_frames` draws from the 'frames' stream, also outside training: inference gives it
  a fixed key per batch, so the scores repeat."""
  config = tiny_config("netvlad", **{"teacher.netvlad.random_frames": True, "student.netvlad.random_frames": True,
                                     "teacher.netvlad.num_random_frames": 8})
  teacher = inference.Network.from_restored(restored_of(config), "teacher")
  frames, n = frames_batch(seed=2)
  first = teacher.probabilities(frames, n, batch_index=0)
  np.testing.assert_array_equal(teacher.probabilities(frames, n, batch_index=0), first)
  assert not np.allclose(teacher.probabilities(frames, n, batch_index=1), first)  # another batch, other draws


def test_cast_for_inference_is_bit_identical_in_bfloat16():
  config = tiny_config(dtype="bfloat16")
  network = inference.Network.from_restored(restored_of(config), "teacher", cast=False)
  cast = inference.cast_for_inference(network.forward, network.variables, max_frames=T, feature_dim=16,
                                      dtype="bfloat16")
  assert cast["params"]["head"]["logits"]["kernel"].dtype == jnp.bfloat16
  assert {x.dtype for x in jax.tree.leaves(cast["batch_stats"])} == {jnp.dtype(jnp.float32)}
  frames, n = frames_batch(seed=3)
  forward = jax.jit(lambda v: network.forward.apply(v, frames, n).probabilities)
  np.testing.assert_array_equal(forward(cast), forward(network.variables))
  assert inference.cast_for_inference(network.forward, network.variables, max_frames=T, feature_dim=16,
                                      dtype="float32") is network.variables
