"""Export (`export.py`, `serving.py`, `reader.RequestReader`), proved outside the project.

One tiny NeXtVLAD run is trained once (2 steps); its student is exported by `main --mode=export` and its
teacher by `export_workdir(best=True)`. `tests/export_client.py`, a fresh process that cannot import
`fewframes_jax`, loads both SavedModels and `jax.export` artifacts and serves the bundled eval split (plus
a zero-frame video) at batch sizes 1, 7 and 64 and corrupt records; every answer is checked against
`checkpoint.restore(...)` + the project's own forward. Every family is lowered (all frames, the 'random'
rule drawn inside, preselected frames) and checked for ops TensorFlow 2.21 cannot load; H-RNN with the
'random' rule and a bfloat16 NetVLAD run in TensorFlow in-process against JAX, on fresh tiny networks.

Tolerance: float32 on a CPU, the exported scores are within SCORE_ATOL of the project's (TensorFlow's
XLA and JAX's compile the same StableHLO; observed differences are below 1e-7), and the class ids are
the same wherever the scores are not tied within that tolerance.
"""
import dataclasses
import functools
import json
import os
import subprocess
import sys
import types

import jax
import numpy as np
import pytest

from configs import nextvlad_k10
from fewframes_jax import checkpoint as ckpt_lib
from fewframes_jax import errors
from fewframes_jax.serve import export
from fewframes_jax.serve import ranking
from fewframes_jax import inference
from fewframes_jax import specs
from fewframes_jax import models
from fewframes_jax.sampling import rules
from fewframes_jax.serve import saved_model
from fewframes_jax.train import loop
from fewframes_jax.metrics import flops as flops_lib
from fewframes_jax.data import reader, records, yt8m
from fewframes_jax.sampling import learned

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = "--config=configs/nextvlad_k10.py:tiny,mode=parallel"
SCORE_ATOL = 1e-6
BATCH_SIZES = (1, 7, 64)
NETWORKS = ("student", "teacher")
# The client compiles each request size anew (TensorFlow's XLA): as `fast_compile` does for JAX here.
CLIENT_XLA_FLAGS = "--xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes=true"

pytestmark = pytest.mark.usefixtures("fast_compile")


def assert_same_ranking(class_ids, scores, want_ids, want_scores, atol=SCORE_ATOL):
  """Scores within `atol` rank by rank; ids equal except among scores tied within 2 * atol."""
  np.testing.assert_allclose(scores, want_scores, rtol=0, atol=atol)
  assert class_ids.shape == want_ids.shape and class_ids.dtype == np.int32
  for row, (ids, want, s) in enumerate(zip(class_ids, want_ids, want_scores)):
    for rank, (got, expected) in enumerate(zip(ids, want)):
      tied = want[np.abs(s - s[rank]) <= 2 * atol]
      assert got == expected or got in tied, (row, rank, ids, want, s)


def project_ranking(network: inference.Network, frames, num_frames):
  """The project's answer: `Network.probabilities` ranked on the host (stable: ties by class id)."""
  probs = np.asarray(network.probabilities(frames, num_frames))
  order = np.argsort(-probs, axis=-1, kind="stable")[:, :ranking.TOP_K]
  return order.astype(np.int32), np.take_along_axis(probs, order, axis=-1)


def record(video_id, num_frames, *, rgb=1024, audio=128, seed=0, labels=(0,), **kw):
  rng = np.random.default_rng(seed)
  features = {"rgb": rng.integers(0, 256, (num_frames, rgb), dtype=np.uint8),
              "audio": rng.integers(0, 256, (num_frames, audio), dtype=np.uint8)}
  return records.encode_sequence_example(video_id=video_id, labels=labels, features=features, **kw)


# ---------------------------------------------------------------------------------------------
# One trained run, exported twice; the requests and the project's answers.


@pytest.fixture(scope="module")
def workdir(tmp_path_factory, fast_compile):  # pylint: disable=unused-argument
  """A tiny NeXtVLAD run (teacher + uniform k=10 student, parallel: one run), trained for 2 steps on the
  bundled data."""
  path = str(tmp_path_factory.mktemp("export") / "run")
  config = nextvlad_k10.get_config("tiny,mode=parallel")
  config.train.num_steps = 2
  loop.train_and_evaluate(config, path)
  return path


@pytest.fixture(scope="module")
def run(workdir):
  """The run's student exported by `main --mode=export` (a subprocess), its teacher by
  `export_workdir(best=True)` in this process, at the same time."""
  root = os.path.dirname(workdir)
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  cli = subprocess.Popen([sys.executable, "-m", "fewframes_jax.main", TINY, f"--workdir={workdir}", "--mode=export"],
                         cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
  try:
    teacher_info = export.export_workdir(workdir, os.path.join(root, "teacher"), network="teacher", best=True)
    stdout, stderr = cli.communicate(timeout=600)
  finally:
    if cli.poll() is None:
      cli.kill()
  assert cli.returncode == 0, stdout[-3000:] + stderr[-5000:]
  return types.SimpleNamespace(root=root, workdir=workdir, cli_stdout=stdout, restored=ckpt_lib.restore(workdir),
                               exports={"student": os.path.join(workdir, "export", "student"),
                                        "teacher": os.path.join(root, "teacher")},
                               teacher_info=teacher_info)


@pytest.fixture(scope="module")
def requests(run):
  """The bundled eval split and a zero-frame video, as one TFRecord file, decoded by the training
  pipeline (`yt8m.make_dataset`), with the project's ranking of each network on them."""
  d = run.restored.spec.data
  tf = records.tensorflow()
  serialized = [r.numpy() for r in tf.data.TFRecordDataset(yt8m.list_files(d.eval_pattern))]
  serialized.append(record(b"zero_frames", 0))
  path = os.path.join(run.root, "requests.tfrecord")
  records.write_tfrecord(path, serialized)
  n = len(serialized)
  batch = next(yt8m.as_numpy_batches(yt8m.make_dataset(path, n, training=False, process_index=0,
                                                       process_count=1, **yt8m.config_options(d))))
  assert batch["valid"].all() and batch["num_frames"][-1] == 0
  dense = os.path.join(run.root, "dense.npz")
  np.savez(dense, frames=batch["frames"], num_frames=batch["num_frames"])
  want = {which: project_ranking(run.restored.network(which), batch["frames"], batch["num_frames"])
          for which in NETWORKS}
  return types.SimpleNamespace(path=path, serialized=serialized, dense=dense, batch=batch, want=want)


CORRUPT = {  # case -> (a bad serialized record, what the error must say)
    "truncated": (lambda: record(b"cut", 5)[:-10], "file <request>, record 2"),
    "bad_frame_size": (lambda: record(b"short_audio", 5, audio=100),
                       "fewframes_jax bad record: request record 2: bad_frame_size"),
    "missing_id": (lambda: record(b"", 5, id_key=""), "fewframes_jax bad record: request record 2: missing_id"),
}


def saved_model_cli_show(saved_model_dir):
  """`saved_model_cli show --dir <saved_model_dir> --all`, started (a Popen)."""
  cli = os.path.join(os.path.dirname(sys.executable), "saved_model_cli")
  command = [cli] if os.path.exists(cli) else [sys.executable, "-m", "tensorflow.python.tools.saved_model_cli"]
  return subprocess.Popen(command + ["show", "--dir", saved_model_dir, "--all"],
                          env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"), stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True)


@pytest.fixture(scope="module")
def client(run, requests):
  """What `tests/export_client.py` (no `fewframes_jax`) got from the exports (arrays, {"errors": ...}),
  and the output of `saved_model_cli show --all` on the student's SavedModel, run at the same time."""
  corrupt = {}
  for case, (make, _) in CORRUPT.items():
    corrupt[case] = os.path.join(run.root, f"{case}.bin")
    with open(corrupt[case], "wb") as f:
      f.write(make())
  out = os.path.join(run.root, "client.npz")
  spec = {"exports": run.exports, "records": requests.path, "batch_sizes": list(BATCH_SIZES),
          "dense": requests.dense, "corrupt": corrupt, "out": out}
  spec_path = os.path.join(run.root, "client.json")
  with open(spec_path, "w") as f:
    json.dump(spec, f)
  env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
  env.update(JAX_PLATFORMS="cpu", TF_CPP_MIN_LOG_LEVEL="3",
             XLA_FLAGS=f"{env.get('XLA_FLAGS', '')} {CLIENT_XLA_FLAGS}".strip())
  procs = [subprocess.Popen([sys.executable, os.path.join(ROOT, "tests", "export_client.py"), spec_path],
                            cwd=run.root, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True),
           saved_model_cli_show(os.path.join(run.exports["student"], "saved_model"))]
  try:
    (_, client_err), show = [p.communicate(timeout=600) for p in procs]
  finally:
    for p in procs:
      if p.poll() is None:
        p.kill()
  assert procs[0].returncode == 0, client_err[-5000:]
  with open(out + ".json") as f:
    return types.SimpleNamespace(results=dict(np.load(out)), errors=json.load(f)["errors"],
                                 show=(procs[1].returncode, *show))


# ---------------------------------------------------------------------------------------------
# The top-20 rule.


def test_top_classes_is_lax_top_k_order_with_ties_by_class_id():
  probs = np.array([[0.1, 0.9, 0.5, 0.9, 0.1, 0.3], [0.2] * 6], np.float32)
  ids, scores = ranking.top_classes(probs, 4)
  np.testing.assert_array_equal(ids, [[1, 3, 2, 5], [0, 1, 2, 3]])
  np.testing.assert_array_equal(scores, np.float32([[0.9, 0.9, 0.5, 0.3], [0.2] * 4]))
  assert ranking.top_classes(probs)[0].shape == (2, 6)  # fewer classes than 20: all of them
  rng = np.random.default_rng(0)
  for num_classes in (1, 19, 20, 31, 32, 33, 100, 641, 4716):  # one group, partial groups, many groups
    for levels in (3, 1000):  # many ties (across and within groups), few
      probs = rng.integers(0, levels, (4, num_classes)).astype(np.float32) / levels
      ids, scores = jax.jit(ranking.top_classes)(probs)
      want_scores, want_ids = jax.lax.top_k(probs, min(20, num_classes))
      np.testing.assert_array_equal(ids, want_ids, err_msg=f"C={num_classes}")
      np.testing.assert_array_equal(scores, want_scores)
      assert ids.dtype == np.int32


# ---------------------------------------------------------------------------------------------
# The artifacts and export_info.json.


def test_main_export_writes_the_savedmodel_the_jax_artifact_and_the_info(run):
  folder = run.exports["student"]
  assert f"exported the student of {run.workdir} to {folder}" in run.cli_stdout
  assert os.path.isfile(os.path.join(folder, "saved_model", "saved_model.pb"))
  assert os.path.isdir(os.path.join(folder, "saved_model", "variables"))
  weights = np.load(os.path.join(folder, export.JAX_WEIGHTS_FILE))
  network = run.restored.network("student")
  assert sorted(weights.files)[0].startswith("0000.") and len(weights.files) == len(jax.tree.leaves(network.variables))
  with open(os.path.join(folder, export.INFO_FILE)) as f:
    info = json.load(f)
  c = run.restored.spec
  model = network.forward.model
  flops, params = flops_lib.model_cost(model, frames=10, feature_dim=1152)
  assert info["network"] == "student" and info["family"] == "nextvlad"
  assert (info["k"], info["selection"], info["frames_seen"]) == (10, "uniform", 10)
  assert (info["num_classes"], info["top_k"], info["max_frames"]) == (c.data.num_classes, 8, 300)
  assert info["feature_names"] == ["rgb", "audio"] and info["feature_sizes"] == [1024, 128]
  assert info["id_key"] == "auto" and "`video_id`" in info["id_key_convention"]
  assert info["flops_per_video"] == pytest.approx(flops) and info["params"] == params > 0
  assert info["checkpoint_step"] == 2 and info["workdir"] == os.path.abspath(run.workdir)
  assert info["dtype"] == "float32" and {"jax", "jaxlib", "flax"} <= set(info["versions"])
  assert info["signatures"] == {
      "serving_default": {"inputs": {"serialized": ["string", [None]]},
                          "outputs": {"video_id": ["string", [None]], "class_ids": ["int32", [None, 8]],
                                      "scores": ["float32", [None, 8]]}},
      "dense": {"inputs": {"frames": ["uint8", [None, 300, 1152]], "num_frames": ["int32", [None]]},
                "outputs": {"class_ids": ["int32", [None, 8]], "scores": ["float32", [None, 8]]}}}
  teacher = run.teacher_info
  assert (teacher["network"], teacher["k"], teacher["selection"], teacher["frames_seen"]) == (
      "teacher", None, "all frames", 300)
  assert teacher["flops_per_video"] > info["flops_per_video"]
  assert teacher["checkpoint_step"] == ckpt_lib.find_step(run.workdir, best=True)


def test_the_flops_of_an_anyk_hrnn_below_a_whole_block_and_of_a_learned_selector():
  """An any-k H-RNN (blocks of 6) at budget 4 runs on 6 slots; a learned order's scorer reads all T."""
  import test_anyk  # pylint: disable=g-import-not-at-top
  from fewframes_jax.benchmark import selection_cost  # pylint: disable=g-import-not-at-top
  from fewframes_jax.train import run_setup  # pylint: disable=g-import-not-at-top
  for order in ("coarse_to_fine", "learned"):
    config = test_anyk.anyk_config("hrnn", order=order)
    spec = specs.RunSpec.from_config(config)
    forward = inference.student_forward(spec, run_setup.make_setup(spec).student_model, 4)
    assert forward.selection.slots == 6
    network = inference.Network(which="student", forward=forward, variables={}, spec=spec)
    want = flops_lib.model_cost(forward.model, frames=6, feature_dim=16)[0] + selection_cost.scorer_flops(config)
    assert (selection_cost.scorer_flops(config) > 0) == (order == "learned")
    assert export.export_info(network)["flops_per_video"] == pytest.approx(want)


def test_export_of_a_network_the_run_lacks_is_a_user_error(run, monkeypatch, tmp_path):
  restored = ckpt_lib.restore(run.workdir)
  restored.student_model = restored.student_variables = None  # as a teacher-mode run
  monkeypatch.setattr(ckpt_lib, "restore", lambda *a, **k: restored)
  with pytest.raises(errors.UserError, match="--network=student: the checkpoint .* has no student"):
    export.export_workdir(run.workdir, str(tmp_path), network="student")


# ---------------------------------------------------------------------------------------------
# Outside the project: the client's answers against the project's.


@pytest.mark.parametrize("which", NETWORKS)
def test_serving_signature_on_records_matches_the_project_at_every_batch_size(client, requests, which):
  results = client.results
  want_ids, want_scores = requests.want[which]
  n = len(requests.serialized)
  for size in BATCH_SIZES:
    rows = np.arange(size) % n
    prefix = f"{which}/serve/{size}"
    np.testing.assert_array_equal(results[f"{prefix}/video_id"], requests.batch["video_id"][rows])
    assert results[f"{prefix}/class_ids"].shape == (size, 8)
    assert_same_ranking(results[f"{prefix}/class_ids"], results[f"{prefix}/scores"], want_ids[rows],
                        want_scores[rows])
  zero = results[f"{which}/serve/64/scores"][n - 1]  # the zero-frame video
  assert np.isfinite(zero).all() and requests.batch["num_frames"][n - 1] == 0


@pytest.mark.parametrize("which", NETWORKS)
def test_dense_signature_and_the_jax_export_artifact_match_the_project(client, requests, which):
  results = client.results
  for path in ("dense", "jax"):
    assert_same_ranking(results[f"{which}/{path}/class_ids"], results[f"{which}/{path}/scores"],
                        *requests.want[which])


@pytest.mark.parametrize("case", sorted(CORRUPT))
def test_a_corrupt_record_is_a_clear_error_not_an_answer(client, case):
  for which in NETWORKS:
    message = client.errors[which][case]
    assert message is not None, f"{which} answered a request with a {case} record"
    assert CORRUPT[case][1] in message, message


def test_saved_model_cli_shows_both_signatures(client):
  returncode, out, err = client.show
  assert returncode == 0, err[-3000:]
  serving_default = out[out.index("signature_def['serving_default']"):]
  dense = out[out.index("signature_def['dense']"):out.index("signature_def['serving_default']")]
  for text, fragment in [(serving_default, "inputs['serialized'] tensor_info:\n        dtype: DT_STRING\n"
                                           "        shape: (-1)"),
                         (serving_default, "outputs['class_ids'] tensor_info:\n        dtype: DT_INT32\n"
                                           "        shape: (-1, 8)"),
                         (serving_default, "outputs['scores'] tensor_info:\n        dtype: DT_FLOAT\n"
                                           "        shape: (-1, 8)"),
                         (serving_default, "outputs['video_id'] tensor_info:\n        dtype: DT_STRING"),
                         (dense, "inputs['frames'] tensor_info:\n        dtype: DT_UINT8\n"
                                 "        shape: (-1, 300, 1152)"),
                         (dense, "inputs['num_frames'] tensor_info:\n        dtype: DT_INT32")]:
    assert fragment in text, (fragment, out)


def test_tf_serving_predict_request_for_the_serving_signature(run, requests):
  """The request TF Serving's gRPC Predict takes (`PredictRequest`, built from its schema:
  `tf_serving_messages`), serialized and read back without a server, then served."""
  import tf_serving_messages  # pylint: disable=g-import-not-at-top
  tf = records.tensorflow()
  from tensorflow.core.framework import tensor_pb2  # pylint: disable=g-import-not-at-top
  predict_request = tf_serving_messages.predict_request_class()
  request = predict_request()
  request.model_spec.name = "fewframes_student"
  request.model_spec.signature_name = "serving_default"
  request.inputs["serialized"].ParseFromString(
      tf.make_tensor_proto(requests.serialized[:3], dtype=tf.string).SerializeToString())
  parsed = predict_request.FromString(request.SerializeToString())
  assert (parsed.model_spec.name, parsed.model_spec.signature_name) == ("fewframes_student", "serving_default")
  tensor = tensor_pb2.TensorProto.FromString(parsed.inputs["serialized"].SerializeToString())
  assert tensor.dtype == tf.string.as_datatype_enum
  assert [d.size for d in tensor.tensor_shape.dim] == [3]
  signature = tf.saved_model.load(os.path.join(run.exports["student"], "saved_model")).signatures[
      parsed.model_spec.signature_name]
  out = signature(serialized=tf.constant(tf.make_ndarray(tensor)))
  assert_same_ranking(out["class_ids"].numpy(), out["scores"].numpy(), *(w[:3] for w in requests.want["student"]))


# ---------------------------------------------------------------------------------------------
# Every family, and the 'random' rule, converted for TensorFlow.


def tiny_network(family, which, method, *, init=True, dtype="float32"):
  """A fresh (untrained) tiny network: T=12 frames of 16 bytes, 6 classes, k=4, its weights stored as a
  restored network's (`cast_for_inference`); `init=False`: its variables abstract (shapes only)."""
  from configs import base  # pylint: disable=g-import-not-at-top
  from fewframes_jax.models import build_model  # pylint: disable=g-import-not-at-top
  c = base.experiment(family, k=4, arg=f"tiny,sampling={method or 'uniform'}")
  c.data.max_frames, c.data.num_classes, c.data.feature_sizes = 12, 6, (12, 4)
  c.teacher.hrnn.num_blocks, c.student.hrnn.num_blocks = 3, 2
  c.dtype = dtype
  spec = specs.RunSpec.from_config(c)
  selection = inference.Selection() if which == "teacher" else inference.student_selection(spec)
  model = build_model(getattr(spec, which), num_classes=6, feature_sizes=(12, 4), dtype=c.dtype)
  forward = inference.Forward(model, selection)
  frames = 12 if which == "teacher" else 4
  variables = flops_lib.abstract_variables(model, frames=frames, feature_dim=16)
  if init:
    key = jax.random.PRNGKey(0)
    variables = jax.jit(functools.partial(model.init, train=False))(
        {"params": key, "dropout": key, "frames": key}, np.zeros((1, frames, 16), np.float32), np.ones(1, np.int32))
    variables = inference.cast_for_inference(forward, variables, max_frames=12, feature_dim=16, dtype=c.dtype)
    if selection.learned:
      variables = with_random_selector(variables, selection.scorer)
  return inference.Network(which=which, forward=forward, variables=variables, spec=spec)


def with_random_selector(variables, scorer, seed=2):
  """`variables` with random weights for a learned selector's `scorer`, in the student's tree as a trained
  run has them."""
  params = learned.init_params(scorer, jax.random.PRNGKey(seed), frames=12)
  params = jax.tree.map(lambda x: np.random.default_rng(seed).normal(size=x.shape).astype(np.float32), params)
  return dict(variables, params=dict(variables["params"], **{learned.SELECTOR_KEY: params}))


def test_a_learned_audio_student_serves_from_records_as_the_project_scores():
  """The served SavedModel function of a student whose learned selector reads the audio stream: the
  request reader scores the audio of every frame and decodes the k chosen frames (`data/host_scorer.py`)
  and ranks as the project does on every frame."""
  network = tiny_network("nextvlad", "student", "learned", init=True)
  spec = network.spec
  spec = dataclasses.replace(spec, student=dataclasses.replace(
      spec.student, selector=dataclasses.replace(spec.student.selector, streams="audio")))
  selection = inference.student_selection(spec)
  network = inference.Network(which="student", forward=inference.Forward(network.forward.model, selection),
                              variables=with_random_selector(network.variables, selection.scorer, 3),
                              spec=spec)
  assert network.forward.selection.input_frames(inference.split_selector(network.variables)[1]) is not None
  lengths = (12, 7, 3, 1, 15)
  serialized = [record(f"v{i}".encode(), n, rgb=12, audio=4, seed=i) for i, n in enumerate(lengths)]
  _, signatures = saved_model.build_module(network)
  got = signatures["serving_default"](records.tensorflow().constant(serialized))
  frames = np.zeros((len(lengths), 12, 16), np.uint8)
  for i, n in enumerate(lengths):
    rng = np.random.default_rng(i)
    rgb, audio = rng.integers(0, 256, (n, 12), dtype=np.uint8), rng.integers(0, 256, (n, 4), dtype=np.uint8)
    frames[i, :min(n, 12)] = np.concatenate([rgb, audio], axis=1)[:12]
  want = project_ranking(network, frames, np.minimum(np.asarray(lengths, np.int32), 12))
  assert_same_ranking(got["class_ids"].numpy(), got["scores"].numpy(), *want)


@pytest.mark.parametrize("family", models.MODEL_NAMES)
def test_no_family_lowers_to_an_op_that_tensorflow_cannot_load(family):
  """TensorFlow 2.21 reads StableHLO up to 1.13.7: no `stablehlo.composite` (what `lax.top_k` lowers to)
  in any family's exported function, with every frame, a device-drawn selection or preselected frames."""
  for which, method, preselected in (("teacher", None, False), ("student", "random", False),
                                     ("student", "uniform", True)):
    network = tiny_network(family, which, method, init=False)
    b, = jax.export.symbolic_shape("b")
    frames = network.frames_seen if preselected else network.max_frames
    exported = jax.export.export(jax.jit(ranking.ranking_fn(network.forward, preselected=preselected)),
                                 platforms=ranking.PLATFORMS)(
        network.variables, jax.ShapeDtypeStruct((b, frames, 16), np.uint8), jax.ShapeDtypeStruct((b,), np.int32))
    assert "composite" not in exported.mlir_module(), (family, which, method)


@pytest.mark.parametrize("family,method,dtype", [("hrnn", "random", "float32"),
                                                 ("netvlad", "first_middle_last", "bfloat16")])
def test_other_families_run_in_tensorflow_as_in_jax(family, method, dtype):
  """H-RNN (scans; 'random': k frames drawn inside the function from eval_key(0)) and NetVLAD (a
  deterministic rule: all frames in, and the k-frame decode's preselected frames; a bfloat16 run, its
  weights stored in bfloat16) rank in TensorFlow as in JAX."""
  tf = records.tensorflow()
  network = tiny_network(family, "student", method, dtype=dtype)
  rng = np.random.default_rng(1)
  num_frames = np.array([12, 7, 3, 0, 1], np.int32)
  frames = rng.integers(0, 256, (5, 12, 16), dtype=np.uint8)
  frames[np.arange(12)[None, :] >= num_frames[:, None]] = 0
  want = project_ranking(network, frames, num_frames)
  ranking = saved_model.tf_ranking_fn(network, network.variables, preselected=False)
  assert_same_ranking(*(t.numpy() for t in ranking(tf.constant(frames), tf.constant(num_frames))), *want)
  if network.forward.selection.input_frames():
    k, rule = network.forward.selection.input_frames()
    indices, num_k = rules.frame_indices_np(num_frames, k, rule, max_frames=12)
    picked = np.take_along_axis(frames, indices[:, :, None], axis=1)
    picked[np.arange(k)[None, :] >= num_k[:, None]] = 0
    ranking = saved_model.tf_ranking_fn(network, network.variables, preselected=True)
    assert_same_ranking(*(t.numpy() for t in ranking(tf.constant(picked), tf.constant(num_k))), *want)


# ---------------------------------------------------------------------------------------------
# The request reader.


def test_request_reader_ignores_labels_and_names_the_bad_record():
  tf = records.tensorflow()
  kw = dict(num_classes=4, max_frames=6, feature_names=("rgb", "audio"), feature_sizes=(8, 4))
  good = [record(b"a", 3, rgb=8, audio=4, labels=(99,)),  # a label outside [0, 4): ignored at serving
          record(b"b", 9, rgb=8, audio=4, labels=())]
  no_labels = tf.train.SequenceExample()  # no `labels` key at all
  no_labels.ParseFromString(record(b"c", 2, rgb=8, audio=4))
  del no_labels.context.feature["labels"]
  good.append(no_labels.SerializeToString())
  batch = reader.RequestReader(**kw).parse_request(tf.constant(good))
  assert [v.decode() for v in batch["video_id"].numpy()] == ["a", "b", "c"]
  np.testing.assert_array_equal(batch["num_frames"], [3, 6, 2])
  assert batch["frames"].shape == (3, 6, 12) and not batch["labels"].numpy().any()
  student = reader.RequestReader(student_frames=(2, "uniform"), **kw).parse_request(tf.constant(good))
  assert student["frames"].shape == (3, 2, 12)
  np.testing.assert_array_equal(student["num_frames_k"], [2, 2, 2])
  with pytest.raises(ValueError, match="'random' rule selects on the device"):
    reader.RequestReader(student_frames=(2, "random"), **kw)
  bad = good + [record(b"d", 2, rgb=7, audio=4)]
  with pytest.raises(tf.errors.InvalidArgumentError,
                     match="fewframes_jax bad record: request record 3: bad_frame_size: bytes per frame"):
    reader.RequestReader(**kw).parse_request(tf.constant(bad))
