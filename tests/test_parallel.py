"""The `data` mesh: 8 (fake CPU) devices train and evaluate like 1, and bad batch sizes fail early.

The 8-device part runs in a subprocess started with XLA_FLAGS=--xla_force_host_platform_device_count=8
(the flag must be set before JAX starts). That process trains the same N global batches on a 1-device
mesh and on the 8-device mesh, evaluates both, and writes what it found; the assertions are here.
"""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

import runs_testlib as lib
import setup_testlib
from fewframes_jax import parallel

DEVICES = 8
STEPS = 3
BATCH = 16


def _batch(seed, rows=BATCH, valid_rows=None):
  rng = np.random.default_rng(seed)
  T, D = lib.MAX_FRAMES, sum(lib.FEATURE_SIZES)
  num_frames = rng.integers(0, T + 1, rows).astype(np.int32)
  frames = rng.integers(0, 256, (rows, T, D), dtype=np.uint8)
  frames[np.arange(T)[None, :] >= num_frames[:, None]] = 0
  labels = rng.random((rows, lib.NUM_CLASSES)) < 0.3
  valid = np.arange(rows) < (rows if valid_rows is None else valid_rows)
  return {"frames": frames, "num_frames": num_frames, "labels": labels, "valid": valid,
          "video_id": np.array([b"v%d" % i for i in range(rows)])}


def _child(out_dir):
  """Runs in the 8-device subprocess."""
  import chex  # pylint: disable=g-import-not-at-top
  import jax  # pylint: disable=g-import-not-at-top
  from fewframes_jax.evaluation import evaluate as eval_lib  # pylint: disable=g-import-not-at-top
  from fewframes_jax.train import trainer as train_lib  # pylint: disable=g-import-not-at-top
  from fewframes_jax.train import loop  # pylint: disable=g-import-not-at-top
  from fewframes_jax import checkpoint as ckpt_lib  # pylint: disable=g-import-not-at-top

  assert jax.device_count() == DEVICES, jax.devices()
  compiles = []
  jax.monitoring.register_event_duration_secs_listener(
      lambda event, secs, **kw: compiles.append(event) if event.startswith("/jax/core/compile/") else None)
  report = {}
  config = lib.tiny_config({"train": "unused", "eval": "unused"})
  config.data.batch_size = BATCH
  config.optim.learning_rate = 1e-3
  nets, initial = setup_testlib.setup_run(config, mesh=parallel.make_mesh(jax.devices()[:1]), seed=0)
  initial = jax.device_get(initial)
  train_batches = [_batch(s) for s in range(STEPS)]
  eval_batches = [_batch(100), _batch(101, valid_rows=5)]
  for name, mesh in (("one", parallel.make_mesh(jax.devices()[:1])), ("eight", parallel.make_mesh())):
    state = parallel.replicate(initial, mesh)
    # The trainer's step, wrapped so that a second trace (a retrace between steps) raises.
    def train_step(state, batch):
      return train_lib.train_step(state, batch, setup=nets)

    chex.clear_trace_counter()  # each mesh compiles its own program once

    step = jax.jit(chex.assert_max_traces(train_step, n=1), donate_argnums=(0,))
    losses, retraced = [], None
    try:
      for batch in train_batches:
        global_batch = parallel.to_global(batch, mesh)
        assert len(global_batch["frames"].sharding.device_set) == mesh.devices.size
        state, metrics = step(state, global_batch)
        losses.append(float(metrics["student/loss"]))
    except AssertionError as e:
      retraced = str(e)
    report[name] = {"retraced": retraced, "losses": losses,
                    "param_devices": len(jax.tree.leaves(state.student.params)[0].sharding.device_set)}
    results = eval_lib.evaluate(eval_lib.make_eval_step(nets.forwards(), mesh), train_lib.eval_variables(state),
                                eval_batches, num_classes=config.data.num_classes, mesh=mesh)
    report[name]["eval"] = results
    np.savez(os.path.join(out_dir, f"{name}.npz"), **lib.flatten(jax.device_get(ckpt_lib.state_to_tree(state))))

  # A global batch that does not split over 8 devices: a clear error, and nothing traced or compiled.
  config.data.batch_size = 12
  report["compiles_before"] = len(compiles)  # the listener does see compiles
  compiles.clear()
  try:
    loop.train_and_evaluate(config, os.path.join(out_dir, "run"))
    report["indivisible"] = "no error"
  except ValueError as e:
    report["indivisible"] = str(e)
  report["indivisible_compiles"] = list(compiles)
  try:
    parallel.to_global(_batch(0, rows=12), parallel.make_mesh())
    report["to_global"] = "no error"
  except ValueError as e:
    report["to_global"] = str(e)
  with open(os.path.join(out_dir, "report.json"), "w") as f:
    json.dump(report, f, default=float)


@pytest.fixture(scope="module")
def eight_devices(tmp_path_factory):
  out = tmp_path_factory.mktemp("parallel")
  env = lib.worker_env(XLA_FLAGS=f"--xla_force_host_platform_device_count={DEVICES}")
  proc = subprocess.run([sys.executable, os.path.abspath(__file__), str(out)], env=env, cwd=lib.ROOT,
                        capture_output=True, text=True, timeout=lib.WORKER_TIMEOUT_S)
  assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
  with open(out / "report.json") as f:
    report = json.load(f)
  return report, dict(np.load(out / "one.npz")), dict(np.load(out / "eight.npz"))


def test_eight_devices_train_like_one(eight_devices):
  report, one, eight = eight_devices
  assert report["one"]["param_devices"] == 1 and report["eight"]["param_devices"] == DEVICES
  assert one.keys() == eight.keys()
  np.testing.assert_allclose(report["eight"]["losses"], report["one"]["losses"], rtol=1e-5)
  assert report["one"]["losses"][0] != report["one"]["losses"][-1]  # the steps did something
  for key in one:
    np.testing.assert_allclose(eight[key], one[key], rtol=1e-5, atol=1e-6, err_msg=key)
  assert int(eight["step"]) == STEPS


def test_no_retracing_across_steps(eight_devices):
  report, _, _ = eight_devices
  assert report["one"]["retraced"] is None and report["eight"]["retraced"] is None  # chex.assert_max_traces(n=1)
  assert len(report["one"]["losses"]) == len(report["eight"]["losses"]) == STEPS


def test_eight_device_eval_equals_one_device(eight_devices):
  report, _, _ = eight_devices
  one, eight = report["one"]["eval"], report["eight"]["eval"]
  assert set(one) == {"teacher", "student"}
  for net in one:
    assert one[net]["num_videos"] == eight[net]["num_videos"] == BATCH + 5  # padding rows not counted
    for metric in one[net]:
      np.testing.assert_allclose(eight[net][metric], one[net][metric], rtol=1e-5, atol=1e-6, err_msg=metric)


def test_indivisible_batch_fails_before_compiling(eight_devices):
  report, _, _ = eight_devices
  assert "data.batch_size=12 is not divisible by the 8 devices" in report["indivisible"]
  assert report["compiles_before"] > 0 and report["indivisible_compiles"] == []
  assert "multiple of its 8 local devices" in report["to_global"]


def test_check_batch_size_one_device():
  import jax  # pylint: disable=g-import-not-at-top
  mesh = parallel.make_mesh(jax.devices()[:1])
  parallel.check_batch_size(5, mesh)
  with pytest.raises(ValueError, match=r"data.eval_batch_size=0 is not divisible"):
    parallel.check_batch_size(0, mesh, what="data.eval_batch_size")


def test_to_global_rejects_ragged_keys():
  import jax  # pylint: disable=g-import-not-at-top
  batch = _batch(0, rows=4)
  batch["labels"] = batch["labels"][:3]
  with pytest.raises(ValueError, match=r"batch\['labels'\] has shape \(3, 8\); every key needs the same 4 rows"):
    parallel.to_global(batch, parallel.make_mesh(jax.devices()[:1]))


@pytest.mark.parametrize("env, expected", [
    ({}, None),
    ({"FEWFRAMES_DISTRIBUTED": "0"}, None),
    ({"FEWFRAMES_DISTRIBUTED": "1"}, {}),
    ({"FEWFRAMES_DISTRIBUTED": "1", "FEWFRAMES_INIT_TIMEOUT": "30"}, {"initialization_timeout": 30}),
    ({"FEWFRAMES_COORDINATOR": "10.0.0.1:1234", "FEWFRAMES_NUM_PROCESSES": "4", "FEWFRAMES_PROCESS_ID": "3"},
     {"coordinator_address": "10.0.0.1:1234", "num_processes": 4, "process_id": 3}),
])
def test_distributed_args(env, expected):
  assert parallel.distributed_args(env) == expected


@pytest.mark.parametrize("env, message", [
    ({"FEWFRAMES_COORDINATOR": "10.0.0.1"}, "expected host:port"),
    ({"FEWFRAMES_COORDINATOR": "h:1", "FEWFRAMES_PROCESS_ID": "0"}, "FEWFRAMES_NUM_PROCESSES must be an integer"),
    ({"FEWFRAMES_COORDINATOR": "h:1", "FEWFRAMES_NUM_PROCESSES": "2", "FEWFRAMES_PROCESS_ID": "2"},
     r"FEWFRAMES_PROCESS_ID=2 must be in \[0, FEWFRAMES_NUM_PROCESSES=2\)"),
    ({"FEWFRAMES_DISTRIBUTED": "yes"}, "expected 0 or 1"),
])
def test_distributed_args_errors(env, message):
  with pytest.raises(ValueError, match=message):
    parallel.distributed_args(env)


if __name__ == "__main__":
  _child(sys.argv[1])
