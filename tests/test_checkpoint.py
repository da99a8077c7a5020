"""Checkpoints: latest N plus the best eval GAP are kept; the files are plain Orbax; clear errors."""
import os

import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
import pytest

from configs import base
from fewframes_jax import specs
from fewframes_jax import checkpoint as ckpt_lib


def tiny_state(step, value):
  net = specs.NetState(params={"encoder": {"w": jnp.full([3], value, jnp.float32)}},
                           batch_stats={}, opt_state=None)
  return specs.DistillState(step=jnp.asarray(step, jnp.int32), rng=jnp.zeros([2], jnp.uint32),
                                teacher=net, student=None)


def test_keeps_latest_and_best_and_reads_as_plain_orbax(tmp_path):
  workdir = str(tmp_path)
  config = base.get_config()
  manager = ckpt_lib.make_manager(workdir, keep=2)
  gaps = {1: 0.9, 2: 0.1, 3: 0.2, 4: 0.3, 5: 0.4}
  for step, gap in gaps.items():
    ckpt_lib.save(manager, tiny_state(step, float(step)), specs.RunSpec.from_config(config), metrics={"gap": gap},
                  data_position={"positions": [[0, 0, step]]})
  manager.wait_until_finished()
  manager.close()
  steps = sorted(int(s) for s in os.listdir(ckpt_lib.checkpoint_dir(workdir)) if s.isdigit())
  assert steps == [1, 4, 5]  # the best (GAP 0.9) and the latest two
  assert ckpt_lib.find_step(workdir, best=True) == 1
  assert ckpt_lib.find_step(workdir) == 5
  # Plain Orbax, no project code: the arrays, the config and the metadata come back.
  plain = ocp.CheckpointManager(os.path.join(workdir, "checkpoints"))
  restored = plain.restore(4)
  np.testing.assert_array_equal(restored["state"]["teacher"]["params"]["encoder"]["w"], [4.0, 4.0, 4.0])
  assert restored["meta"]["metrics"]["gap"] == 0.3 and restored["config"]["data"]["max_frames"] == 300
  plain.close()


def test_restore_into_the_training_structure(tmp_path):
  workdir = str(tmp_path)
  manager = ckpt_lib.make_manager(workdir)
  ckpt_lib.save(manager, tiny_state(7, 2.5), specs.RunSpec.from_config(base.get_config()), data_position={"positions": [[1, 2, 3]]},
                force=True)
  manager.wait_until_finished()
  state, meta = ckpt_lib.restore_state(manager, 7, tiny_state(0, 0.0))
  manager.close()
  assert isinstance(state, specs.DistillState) and int(state.step) == 7 and meta["data_position"] == {"positions": [[1, 2, 3]]}
  np.testing.assert_array_equal(state.teacher.params["encoder"]["w"], [2.5, 2.5, 2.5])


def test_missing_checkpoints_are_clear_errors(tmp_path):
  with pytest.raises(FileNotFoundError, match="no checkpoints in"):
    ckpt_lib.restore(str(tmp_path / "nothing"))
  workdir = str(tmp_path / "run")
  manager = ckpt_lib.make_manager(workdir)
  ckpt_lib.save(manager, tiny_state(3, 1.0), specs.RunSpec.from_config(base.get_config()), force=True)
  manager.wait_until_finished()
  manager.close()
  with pytest.raises(FileNotFoundError, match="step 9 not in"):
    ckpt_lib.find_step(workdir, step=9)
  with pytest.raises(FileNotFoundError, match="has an eval GAP"):
    ckpt_lib.find_step(workdir, best=True)


def test_saving_is_asynchronous_and_waited_for(tmp_path):
  """`save` returns while Orbax is still writing (training goes on); the next save and the end of a
  run wait for it, and the step is complete only then."""
  workdir = str(tmp_path)
  manager = ckpt_lib.make_manager(workdir)
  state = tiny_state(1, 1.0)
  big = np.ones([4096, 4096], np.float32)  # 64 MiB: a write that takes a while
  state = state.replace(teacher=state.teacher.replace(params={"encoder": {"w": big}}))
  ckpt_lib.save(manager, state, specs.RunSpec.from_config(base.get_config()), force=True)
  assert manager.is_saving_in_progress()
  assert ckpt_lib.complete_steps(workdir) == []  # not renamed into place yet
  manager.wait_until_finished()
  assert not manager.is_saving_in_progress() and ckpt_lib.complete_steps(workdir) == [1]
  manager.close()
