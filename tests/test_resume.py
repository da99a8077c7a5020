"""Preemption and failures, with real worker processes (tests/runs_testlib.py) on CPU.

One run is trained without interruption. Another, with the same command, is sent SIGTERM during step 3
(as SLURM or a preemptible VM does), and again while it waits for the save: it saves step 3 and exits 0
with a message. Restarted, it resumes
at step 3 and is SIGKILLed inside the save of step 4 (files written, not yet renamed). Restarted once
more, it resumes from step 3, the last complete checkpoint (the torn save ignored), and ends with every
array of its state bit-identical to the uninterrupted run's. A third run gets a NaN in the batch of step
3: it stops with the step and the loss term in the error, and its last good checkpoint (step 2) is kept.
Each resume continues the input stream at the saved record (no batch is read twice: the checkpoint
holds the stream position).
"""
import glob
import os
import re

import numpy as np
import pytest

import runs_testlib as lib
from fewframes_jax import checkpoint as ckpt_lib

STEPS = 6


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
  root = tmp_path_factory.mktemp("resume")
  data = lib.write_dataset(str(root / "data"))
  return {"root": root, "data": data, "env": lib.worker_env()}


def _spec(setup, name, *, fault="", result=True):
  root = setup["root"]
  return {"data": setup["data"], "workdir": str(root / name), "steps": STEPS, "fault": fault,
          "result": str(root / f"{name}_result") if result else ""}


def _log(setup, name):
  return str(setup["root"] / f"{name}.log")


def _read(path):
  with open(path) as f:
    return f.read()


def _complete_steps(workdir):
  return ckpt_lib.complete_steps(workdir)


def _start(setup, name, spec):
  return lib.start_worker(spec, setup["env"], _log(setup, name))


def test_preempted_and_killed_runs_restart_bit_identical_and_nan_stops(setup):
  full = _spec(setup, "full")
  resumed = _spec(setup, "resumed")
  nan = _spec(setup, "nan", fault="nan_at=3", result=False)
  ckpt = ckpt_lib.checkpoint_dir(resumed["workdir"])

  # Round 1, alone (its compiles fill the session's compile cache for every later process): the run
  # sent SIGTERM during step 3.
  code = lib.run_worker(dict(resumed, fault="sigterm_at=3"), setup["env"], _log(setup, "term"))
  log = _read(_log(setup, "term"))
  assert code == 0, lib.tail(_log(setup, "term"))  # a clean exit, not a kill
  assert "FAULT: SIGTERM during step 3" in log and "Stopped at step 3 on a preemption signal" in log
  assert "FAULT: SIGTERM again while waiting for the save of step 3" in log
  assert _complete_steps(resumed["workdir"]) == [2, 3] and "Traceback" not in log
  meta = ckpt_lib.read_json_item(resumed["workdir"], 3, "meta")
  assert meta["data_position"] == {"positions": [[0, 0, 3 * 8]]}  # the stream position saved with it

  # Round 2: the same command resumes at step 3 and is killed inside the save of step 4; the
  # uninterrupted run and the NaN run beside it.
  procs = [_start(setup, "kill", dict(resumed, fault="kill_in_save=4")), _start(setup, "full", full),
           _start(setup, "nan", nan)]
  codes = lib.wait_all(procs, [_log(setup, name) for name in ("kill", "full", "nan")])
  log = _read(_log(setup, "kill"))
  assert codes[0] == -9, lib.tail(_log(setup, "kill"))
  assert f"Resumed from {resumed['workdir']} at step 3" in log and "FAULT: SIGKILL inside the save of step 4" in log
  assert glob.glob(os.path.join(ckpt, "4.orbax-checkpoint-tmp*")), os.listdir(ckpt)  # the torn save
  assert _complete_steps(resumed["workdir"]) == [2, 3]
  assert codes[1] == 0, lib.tail(_log(setup, "full"))

  log = _read(_log(setup, "nan"))
  assert codes[2] == 1, lib.tail(_log(setup, "nan"))
  error = re.search(r"FloatingPointError: non-finite loss at step (\d+): (.*); training stopped", log)
  assert error, lib.tail(_log(setup, "nan"))
  assert error.group(1) == "3" and "teacher/ce=nan" in error.group(2) and "student/ce=nan" in error.group(2)
  assert _complete_steps(nan["workdir"]) == [2]  # the last good checkpoint is kept, nothing after it
  kept = ckpt_lib.restore(nan["workdir"])
  assert kept.step == 2
  leaves = list(lib.flatten(kept.variables).values()) + list(lib.flatten(kept.student_variables).values())
  assert leaves and all(np.all(np.isfinite(x)) for x in leaves)

  # Round 3: the same command again resumes from step 3 (the torn step-4 save is ignored) and finishes.
  code = lib.run_worker(resumed, setup["env"], _log(setup, "final"))
  assert code == 0, lib.tail(_log(setup, "final"))
  assert f"Resumed from {resumed['workdir']} at step 3" in _read(_log(setup, "final"))
  assert _complete_steps(resumed["workdir"])[-1] == STEPS

  summary_full, state_full = lib.load_result(full["result"])
  assert {"step", "rng"} <= state_full.keys() and any(k.startswith("student/opt_state") for k in state_full)
  summary_resumed, state_resumed = lib.load_result(resumed["result"])
  assert summary_full["step"] == summary_resumed["step"] == STEPS
  assert state_full.keys() == state_resumed.keys()
  for key in state_full:  # params, batch stats, optimizer states, step and RNG: bit for bit
    assert state_full[key].dtype == state_resumed[key].dtype, key
    np.testing.assert_array_equal(state_full[key], state_resumed[key], err_msg=key)
  assert summary_full["eval"] == summary_resumed["eval"]

  # The checkpoint records the input position with the state: 6 steps of 8 of the 48 training videos,
  # one round of the 4 files (cycle_length 8) in epoch 0, all consumed.
  meta = ckpt_lib.read_json_item(resumed["workdir"], STEPS, "meta")
  assert meta["data_position"] == {"positions": [[0, 0, STEPS * 8]]} and meta["step"] == STEPS
