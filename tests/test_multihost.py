"""Two local processes joined by `jax.distributed.initialize` on 127.0.0.1 (CPU collectives: gloo).

Each process runs the real `train_and_evaluate` on its own file shard (4 train files -> 2 each; 3 eval
files of 7, 7 and 6 videos -> 13 and 7 videos, so the eval shards need different batch counts). The
test checks that both processes end with identical parameters and eval metrics, that these match a
single-process run on the same global batches (process 0's rows, then process 1's), and that the
2-process eval counts each of the 20 eval videos exactly once. Train file 1 (process 1's) starts with a
bad record and `data.on_error=skip`: the skip is counted across processes, in the summary and in
TensorBoard (which process 0 writes).
"""
import glob
import json
import os

import jax
import numpy as np
import pytest

import runs_testlib as lib
import setup_testlib
from fewframes_jax import checkpoint as ckpt_lib
from fewframes_jax.evaluation import evaluate as eval_lib
from fewframes_jax import parallel
from fewframes_jax.train import trainer as train_lib
from fewframes_jax.train import loop
from fewframes_jax.data import stream

STEPS = 4
NUM_EVAL = 20


@pytest.fixture(scope="module")
def two_process_run(tmp_path_factory):
  root = tmp_path_factory.mktemp("multihost")
  data = lib.write_dataset(str(root / "data"), num_eval=NUM_EVAL, bad_train_shards=(1,))
  port = lib.free_port()
  spec = {"data": data, "workdir": str(root / "run"), "result": str(root / "result"), "steps": STEPS,
          "overrides": {"data.on_error": "skip"}}
  procs, logs = [], []
  for p in range(2):
    env = lib.worker_env(FEWFRAMES_COORDINATOR=f"127.0.0.1:{port}", FEWFRAMES_NUM_PROCESSES=2, FEWFRAMES_PROCESS_ID=p,
                         FEWFRAMES_INIT_TIMEOUT=120)
    logs.append(str(root / f"process{p}.log"))
    procs.append(lib.start_worker(spec, env, logs[-1]))
  codes = lib.wait_all(procs, logs, fail_fast=True)
  assert codes == [0, 0], "\n".join(lib.tail(log) for log in logs)
  results = [lib.load_result(spec["result"], p) for p in range(2)]
  return {"data": data, "spec": spec, "results": results, "logs": logs}


def test_both_processes_end_identical(two_process_run):
  (summary0, params0), (summary1, params1) = two_process_run["results"]
  assert (summary0["process_index"], summary1["process_index"]) == (0, 1)
  assert summary0["process_count"] == summary1["process_count"] == 2
  assert summary0["step"] == summary1["step"] == STEPS
  assert params0.keys() == params1.keys() and len(params0) > 10
  for key in params0:
    np.testing.assert_array_equal(params0[key], params1[key], err_msg=key)
  assert summary0["eval"] == summary1["eval"]


def test_skipped_records_are_counted_over_processes(two_process_run):
  (summary0, _), (summary1, _) = two_process_run["results"]
  # Only process 1 reads the bad file; both report the total.
  assert summary0["skipped_records"] == summary1["skipped_records"]
  skipped = summary0["skipped_records"]
  assert skipped["bad_label"] >= 1 and sum(skipped.values()) == skipped["bad_label"], skipped
  workdir = two_process_run["spec"]["workdir"]
  with open(os.path.join(workdir, "summary.json")) as f:
    assert json.load(f)["skipped_records"] == skipped
  assert f"skipped {skipped['bad_label']} bad training records: {{'bad_label': {skipped['bad_label']}}}" in \
      open(two_process_run["logs"][0]).read()
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  values = [v.simple_value for path in glob.glob(os.path.join(workdir, "tensorboard", "events.*"))
            for event in tf.compat.v1.train.summary_iterator(path) for v in event.summary.value
            if v.tag == "data/skipped_records"]
  assert values == [skipped["bad_label"]]


def _reference_batches(config, steps):
  """The global batches of the 2-process run: each process's local batch, process 0's rows first."""
  streams = [loop._train_batches(config, stream.Position(), process_index=p, process_count=2)  # pylint: disable=protected-access
             for p in range(2)]
  batches = []
  for _ in range(steps):
    parts = [next(s) for s in streams]
    ids = [{v.decode().split("_")[0] for v in part["video_id"]} for part in parts]
    assert ids[0] <= {"train0", "train2"} and ids[1] <= {"train1", "train3"}, ids  # disjoint file shards
    batches.append({k: np.concatenate([part[k] for part in parts]) for k in parts[0] if k not in ("video_id", "position")})
  return batches


def test_matches_single_process_on_same_global_batches(two_process_run, fast_compile):
  assert jax.process_count() == 1 and jax.device_count() == 1
  config = lib.tiny_config(two_process_run["data"], steps=STEPS, **two_process_run["spec"]["overrides"])
  nets, state = setup_testlib.setup_run(config)
  initial = lib.flatten(jax.device_get(ckpt_lib.state_to_tree(state)))
  step = train_lib.jit_train_step(nets)
  for batch in _reference_batches(config, STEPS):
    state, _ = step(state, batch)
  reference = lib.flatten(jax.device_get(ckpt_lib.state_to_tree(state)))
  _, params0 = two_process_run["results"][0]
  assert reference.keys() == params0.keys()
  for key, value in reference.items():
    np.testing.assert_allclose(params0[key], value, rtol=1e-4, atol=2e-6, err_msg=key)
  moved = [k for k in reference if k.endswith("kernel") and not np.allclose(reference[k], initial[k])]
  assert len(moved) > 5  # training moved the weights, so the comparison means something

  # Eval: the restored 2-process checkpoint, evaluated by one process over all eval files, gives the
  # same metrics as the 2-process eval, and both count every video once.
  mesh = parallel.make_mesh()
  manager = ckpt_lib.make_manager(two_process_run["spec"]["workdir"])
  try:
    assert manager.latest_step() == STEPS
    restored, meta = ckpt_lib.restore_state(manager, STEPS, state)
  finally:
    manager.close()
  # Each process's next record in its own stream (a process reads 2 of the 4 files, 4 rows a step).
  assert meta["data_position"] == {"positions": [[0, 0, STEPS * 4], [0, 0, STEPS * 4]]}
  single = loop.run_eval(config, nets, restored, eval_lib.make_eval_step(nets.forwards(), mesh), mesh)
  multi = two_process_run["results"][0][0]["eval"]
  assert set(single) == set(multi) == {"teacher", "student"}
  for net in single:
    assert single[net]["num_videos"] == multi[net]["num_videos"] == NUM_EVAL
    for metric, value in single[net].items():
      np.testing.assert_allclose(multi[net][metric], value, rtol=1e-5, atol=1e-6, err_msg=f"{net}/{metric}")
