"""train_loop.run_eval on records with a bad one: counted and reported with on_error=skip, an error
naming the file and record with on_error=raise; never dropped silently."""
import jax
import pytest

import runs_testlib as lib
from fewframes_jax import parallel
from fewframes_jax import train as train_lib
from fewframes_jax import train_loop

NUM_EVAL = 11  # eval shards of 4, 4, 3 videos; the first record of shard 1 has a label out of range


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
  data = lib.write_dataset(str(tmp_path_factory.mktemp("data")), num_train=8, num_eval=NUM_EVAL,
                           bad_eval_shards=(1,))
  config = lib.tiny_config(data, steps=1, **{"data.on_error": "skip"})
  nets = train_loop.build(config)
  state = train_loop.create_state(config, nets, feature_dim=sum(lib.FEATURE_SIZES), rng=jax.random.PRNGKey(0))
  mesh = parallel.make_mesh()
  return config, state, train_lib.jit_eval_step(nets, mesh), mesh


def test_eval_skips_are_counted_and_the_rest_evaluated(setup, fast_compile):
  config, state, eval_step, mesh = setup
  results = train_loop.run_eval(config, state, eval_step, mesh)
  assert set(results) == {"teacher", "student"}
  for metrics in results.values():
    assert metrics["skipped_records"] == 1
    assert metrics["num_videos"] == NUM_EVAL - 1  # every other video, the last partial batch included


def test_eval_bad_record_raises_with_on_error_raise(setup, fast_compile):
  config, state, eval_step, mesh = setup
  config = config.copy_and_resolve_references()
  config.data.on_error = "raise"
  with pytest.raises(ValueError, match=r"eval-1\.tfrecord.*record 0.*label"):
    train_loop.run_eval(config, state, eval_step, mesh)
