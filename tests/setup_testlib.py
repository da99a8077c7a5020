"""A run's set-up and fresh state for tests that drive train steps by hand."""
from typing import Optional

import jax
import ml_collections

from fewframes_jax import parallel
from fewframes_jax import specs
from fewframes_jax.train import loop
from fewframes_jax.train import run_setup


def setup_run(config: ml_collections.ConfigDict, *, mesh=None, seed: Optional[int] = None):
  """(TrainSetup, DistillState at step 0 on the mesh) of a resolved, validated config (or its spec): the
  networks it loads (`loop.load_networks`), `run_setup.make_setup`, `run_setup.create_state`."""
  mesh = mesh or parallel.make_mesh()
  spec = config if isinstance(config, specs.RunSpec) else specs.RunSpec.from_config(config)
  loaded = loop.load_networks(spec)
  setup = run_setup.make_setup(spec, teacher_model=loaded.teacher_model)
  rng = jax.random.PRNGKey(spec.seed if seed is None else seed)
  return setup, run_setup.create_state(setup, rng, mesh, teacher_variables=loaded.teacher_variables,
                                       student_variables=loaded.student_variables)
