"""Device mesh, shardings, multi-host start-up, and host-local batches -> global `jax.Array`s.

One 1-D mesh over all devices with axis `data`: the batch is sharded on its first axis, parameters
and optimizer states are replicated. Gradients of a loss that is a mean over the global batch are
the average over devices, with no explicit collective (XLA inserts the all-reduce).
"""
import os
from typing import Any, Mapping

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

DATA_AXIS = "data"

# Host-side keys that never go to the device.
HOST_ONLY_KEYS = ("video_id",)


def maybe_initialize_distributed() -> None:
  """Calls `jax.distributed.initialize()` when launched as one of several processes.

  Triggered by `FEWFRAMES_COORDINATOR` (address:port) with `FEWFRAMES_NUM_PROCESSES` and
  `FEWFRAMES_PROCESS_ID`, or by the cluster environments JAX detects itself (SLURM, TPU pods,
  Open MPI) when `FEWFRAMES_DISTRIBUTED=1`. A single-process run does nothing.
  """
  coordinator = os.environ.get("FEWFRAMES_COORDINATOR")
  if coordinator:
    jax.distributed.initialize(coordinator_address=coordinator,
                               num_processes=int(os.environ["FEWFRAMES_NUM_PROCESSES"]),
                               process_id=int(os.environ["FEWFRAMES_PROCESS_ID"]))
  elif os.environ.get("FEWFRAMES_DISTRIBUTED") == "1":
    jax.distributed.initialize()


def make_mesh() -> Mesh:
  """A 1-D mesh over every device of every process, axis name `data`."""
  return Mesh(np.asarray(jax.devices()), (DATA_AXIS,))


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def batch_sharded(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P(DATA_AXIS))


def check_batch_size(global_batch_size: int, mesh: Mesh, what: str = "data.batch_size") -> None:
  """A clear error, before anything compiles, when the batch does not split over the devices."""
  n = mesh.devices.size
  if global_batch_size % n:
    raise ValueError(f"{what}={global_batch_size} is not divisible by the {n} devices of the mesh")
  if global_batch_size % jax.process_count():
    raise ValueError(f"{what}={global_batch_size} is not divisible by the {jax.process_count()} processes")


def local_batch_size(global_batch_size: int) -> int:
  """The rows of the global batch that this process reads."""
  return global_batch_size // jax.process_count()


def to_global(local_batch: Mapping[str, np.ndarray], mesh: Mesh) -> dict:
  """Host-local numpy batch (this process's rows) -> dict of global arrays sharded on `data`.

  Keys in HOST_ONLY_KEYS (ids) stay on the host and are dropped here.
  """
  sharding = batch_sharded(mesh)
  out = {}
  for key, value in local_batch.items():
    if key in HOST_ONLY_KEYS:
      continue
    out[key] = jax.make_array_from_process_local_data(sharding, np.asarray(value))
  return out


def replicate(tree: Any, mesh: Mesh) -> Any:
  """Places a pytree of arrays, replicated, on every device of the mesh."""
  return jax.device_put(tree, replicated(mesh))
