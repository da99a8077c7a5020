"""A learned selector of one stream on the student-only input path (`data/host_scorer.py`): the host scores
that stream of every frame in TensorFlow and decodes only the k frames the device would pick."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import runs_testlib as lib
from configs import base
from fewframes_jax import inference
from fewframes_jax import specs
from fewframes_jax.benchmark import compute
from fewframes_jax.benchmark import pipeline
from fewframes_jax.data import host_scorer
from fewframes_jax.data import records
from fewframes_jax.data import yt8m
from fewframes_jax.data.quantization import dequantize
from fewframes_jax.sampling import content
from fewframes_jax.sampling import learned

pytestmark = pytest.mark.usefixtures("fast_compile")

T, K, C = 20, 5, 6
SIZES = (12, 4)  # rgb, audio
LENGTHS = (0, 3, 5, 8, 13, 20, 27)  # no frames, n < k, n = k, n > k, n = T, n > T (cut to T)


@pytest.fixture(scope="module")
def pattern(tmp_path_factory):
  return lib.write_videos(str(tmp_path_factory.mktemp("host_scorer")), LENGTHS, feature_sizes=SIZES,
                          num_classes=C, split=4)


def read_all(pattern, student_frames=None):
  ds = yt8m.make_dataset(pattern, 4, num_classes=C, max_frames=T, training=False, feature_sizes=SIZES,
                         student_frames=student_frames, process_index=0, process_count=1)
  batches = list(yt8m.as_numpy_batches(ds))
  return {key: np.concatenate([b[key] for b in batches]) for key in batches[0]}


@pytest.fixture(scope="module")
def full(pattern):
  return read_all(pattern)


def scorer_and_params(streams, seed, *, zero=False, prior="none"):
  """A small scorer and random parameters (biases too: their initialiser gives zeros), or all zeros."""
  scorer = learned.FrameScorer(feature_sizes=SIZES, streams=streams, hidden=3, mlp=5, prior=prior)
  params = learned.init_params(scorer, jax.random.PRNGKey(seed), frames=T)
  leaves, treedef = jax.tree.flatten(params)
  rng = np.random.default_rng(seed)
  leaves = [np.zeros(x.shape, np.float32) if zero else rng.normal(size=x.shape).astype(np.float32)
            for x in leaves]
  return scorer, jax.tree.unflatten(treedef, leaves)


def device_selection(full, scorer, params):
  """(frames_k f32[B, k, D], num_frames_k, indices) as `Forward.apply` selects them from the full batch."""
  selection = inference.Selection(K, learned.METHOD, scorer=scorer)
  n = jnp.asarray(full["num_frames"])
  return selection.select(dequantize(full["frames"], n), n, None, return_indices=True,
                          selector_params=params)


def host_indices(full, spec):
  """(indices, num_frames_k, scores) of the host scorer on the full batch's scored stream, in TensorFlow."""
  tf = records.tensorflow()
  scorer = spec[2]
  stream = tf.constant(full["frames"][..., scorer.span[0]:scorer.span[1]])
  n = tf.constant(full["num_frames"])
  indices, num_k = scorer.indices(stream, n, K)
  return indices.numpy(), num_k.numpy(), scorer.scores(stream, n).numpy()


def check_host_path(pattern, full, scorer, params):
  spec = inference.Selection(K, learned.METHOD, scorer=scorer).input_frames(params)
  assert spec[:2] == (K, learned.METHOD) and isinstance(spec[2], host_scorer.HostScorer)
  frames_k, num_k, indices = (np.asarray(a) for a in device_selection(full, scorer, params))
  # The scores, the indices and their padding as on the device.
  n = jnp.asarray(full["num_frames"])
  device_scores = scorer.apply({"params": params}, dequantize(full["frames"], n), n)
  host_idx, host_num_k, host_scores = host_indices(full, spec)
  np.testing.assert_allclose(host_scores, device_scores, rtol=1e-5, atol=1e-5)  # float32 rounding
  np.testing.assert_array_equal(host_idx, indices)
  np.testing.assert_array_equal(host_num_k, num_k)
  # The pipeline's k frames: the full batch's frames at those indices, zero rows after num_frames_k.
  host = read_all(pattern, spec)
  assert host["frames"].shape == (len(full["num_frames"]), K, sum(SIZES)) and host["frames"].dtype == np.uint8
  np.testing.assert_array_equal(host["num_frames_k"], num_k)
  picked = np.take_along_axis(full["frames"], indices[..., None], axis=1)
  picked[np.arange(K)[None, :] >= num_k[:, None]] = 0
  np.testing.assert_array_equal(host["frames"], picked)
  np.testing.assert_array_equal(dequantize(host["frames"], host["num_frames_k"]), frames_k)
  for key in ("num_frames", "labels", "video_id", "valid"):
    np.testing.assert_array_equal(host[key], full[key])
  return host, indices, num_k


@pytest.mark.parametrize("streams,prior", [("audio", "none"), ("rgb", "none"), ("audio", "far_from_mean")])
def test_the_host_path_picks_and_decodes_the_devices_frames(pattern, full, streams, prior):
  assert full["num_frames"][:len(LENGTHS)].tolist() == [min(n, T) for n in LENGTHS]
  for seed in (0, 1):
    _, indices, num_k = check_host_path(pattern, full, *scorer_and_params(streams, seed, prior=prior))
    assert num_k[:len(LENGTHS)].tolist() == [min(n, T, K) for n in LENGTHS]
    assert indices[1].tolist() == [0, 1, 2, 0, 0] and indices[2].tolist() == [0, 1, 2, 3, 4]  # n <= k


def test_equal_scores_pick_the_earliest_frames(pattern, full):
  _, indices, num_k = check_host_path(pattern, full, *scorer_and_params("audio", 0, zero=True))
  expected = np.where(np.arange(K)[None, :] < num_k[:, None], np.arange(K)[None, :], 0)
  np.testing.assert_array_equal(indices, expected)


def test_the_dense_path_given_a_length_past_t_picks_the_records_paths_frames(full):
  """A caller of the dense signature passes a record's own length (27 > T); the records path cuts it to T."""
  scorer, params = scorer_and_params("audio", 0)
  lengths = full["num_frames"].copy()
  lengths[:len(LENGTHS)] = LENGTHS
  for got, want in zip(device_selection(dict(full, num_frames=lengths), scorer, params),
                       device_selection(full, scorer, params)):
    np.testing.assert_array_equal(np.asarray(got), np.asarray(want))


def test_the_ranking_is_the_devices_for_nan_zeros_infinities_and_padding():
  tf = records.tensorflow()
  nan, inf = np.float32(np.nan), np.float32(np.inf)
  scores = np.array([[0.0, -0.0, nan, -inf, 1.0, -nan, 0.0, -1e10, inf, 3.0],
                     [nan, -inf, -inf, nan, 2.0, 2.0, 5.0, 0.0, 0.0, 0.0],
                     [-1e9, -2e9, -1e9, 7.0, 7.0, 7.0, 7.0, 7.0, 7.0, 7.0]], np.float32)
  for n in ([10, 10, 10], [9, 6, 3], [4, 2, 0]):
    for k in (1, 3, 5, 10):
      num_frames = np.array(n, np.int32)
      expected = content.top_k_in_time(jnp.asarray(scores), jnp.asarray(num_frames), k)
      got = host_scorer.top_k_in_time(tf.constant(scores), tf.constant(num_frames), k)
      for e, g in zip(expected, got):
        np.testing.assert_array_equal(g.numpy(), np.asarray(e), err_msg=f"n={n} k={k}")


def learned_config(streams):
  c = base.experiment("nextvlad", k=K, arg="tiny")
  c.data.max_frames, c.data.feature_sizes, c.data.num_classes = T, SIZES, C
  c.data.eval_batch_size = 4
  c.student.sampling = learned.METHOD
  c.student.selector.streams = streams
  return c


def test_a_preselected_host_batch_scores_as_the_full_batch(pattern, full):
  config = learned_config("audio")
  forward = compute.student_forward(config, K)
  network = inference.Network(which="student", forward=forward, spec=specs.RunSpec.from_config(config),
                              variables=compute.served_variables(config, forward, precast=False))
  spec = forward.selection.input_frames(inference.split_selector(network.variables)[1])
  host = read_all(pattern, spec)
  probs_host = network.probabilities(host["frames"], host["num_frames_k"], preselected=True)
  probs_full = network.probabilities(full["frames"], full["num_frames"])
  np.testing.assert_allclose(probs_host, probs_full, rtol=1e-5, atol=1e-5)


def test_a_scorer_of_every_stream_or_without_parameters_stays_on_the_device():
  scorer, params = scorer_and_params("all", 0)
  assert inference.Selection(K, learned.METHOD, scorer=scorer).input_frames(params) is None
  assert inference.student_selection(specs.RunSpec.from_config(learned_config("all"))).input_frames(params) is None
  assert inference.student_selection(specs.RunSpec.from_config(learned_config("audio"))).input_frames() is None  # no parameters


def test_host_scorer_checks_its_parameters_and_its_stream():
  _, params = scorer_and_params("audio", 0)
  assert host_scorer.PAD_SCORE == learned.PAD_SCORE and host_scorer.PRIORS == learned.PRIORS
  scorer = host_scorer.HostScorer((12, 16), params)
  assert scorer.width == 4 and scorer.feature_index(SIZES) == 1
  assert host_scorer.HostScorer((0, 12), scorer_and_params("rgb", 0)[1]).feature_index(SIZES) == 0
  with pytest.raises(ValueError, match="layer 'project'"):
    host_scorer.HostScorer((0, 12), params)  # an audio scorer's kernel on the rgb stream
  with pytest.raises(ValueError, match="Dense layers"):
    host_scorer.HostScorer((12, 16), {"project": params["project"]})
  _, every = scorer_and_params("all", 0)
  with pytest.raises(ValueError, match="exactly one feature"):
    host_scorer.HostScorer((0, 16), every).feature_index(SIZES)


def test_the_reader_checks_a_host_scored_selection(pattern):
  scorer = host_scorer.HostScorer((12, 16), scorer_and_params("audio", 0)[1])
  with pytest.raises(ValueError, match="k="):
    yt8m.make_dataset(pattern, 4, num_classes=C, max_frames=T, feature_sizes=SIZES,
                      student_frames=(T + 1, learned.METHOD, scorer), process_index=0, process_count=1)
  with pytest.raises(ValueError, match="exactly one feature"):
    yt8m.make_dataset(pattern, 4, num_classes=C, max_frames=T, feature_sizes=(10, 6),
                      student_frames=(K, learned.METHOD, scorer), process_index=0, process_count=1)


def test_benchmark_eval_counts_the_scored_stream_of_every_frame(pattern):
  rows = pipeline.benchmark_eval(learned_config("audio"), file_pattern=pattern, ks=[K], rounds=1,
                                 sampled=False)["rows"]
  assert [(r["name"], r["pipeline"], r["method"]) for r in rows] == [
      ("teacher", "full", None), ("student_k5", "student", "learned:audio")]
  frames = sum(min(n, T) for n in LENGTHS) / len(LENGTHS)
  frames_k = sum(min(n, T, K) for n in LENGTHS) / len(LENGTHS)
  assert rows[1]["decoded_frames_per_video"] == pytest.approx(frames_k)
  assert rows[1]["decoded_bytes_per_video"] == pytest.approx(frames * SIZES[1] + frames_k * sum(SIZES))
  assert rows[0]["decoded_bytes_per_video"] == pytest.approx(frames * sum(SIZES))
