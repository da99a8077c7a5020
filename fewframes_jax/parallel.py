"""Device mesh, shardings, multi-host start-up, and host-local batches -> global `jax.Array`s.

One 1-D mesh over all devices with axis `data`: the batch is sharded on its first axis, parameters
and optimizer states are replicated. Gradients of a loss that is a mean over the global batch are
the average over devices, with no explicit collective (XLA inserts the all-reduce).

Multi-host: every process runs the same program. `maybe_initialize_distributed` connects the
processes (before any other JAX call), each process reads its own file shard (`data/yt8m.py`), and
`to_global` assembles the processes' rows into one global batch: process p's rows are rows
[p * b, (p + 1) * b) of the global batch (b = global batch / processes).
"""
import os
from typing import Any, Dict, Mapping, Optional

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

DATA_AXIS = "data"

# Host-side keys that never go to the device: ids, and the training rows' stream positions.
HOST_ONLY_KEYS = ("video_id", "position")

# Environment of an explicit multi-process launch (see launch/README.md).
ENV_COORDINATOR = "FEWFRAMES_COORDINATOR"      # host:port of process 0
ENV_NUM_PROCESSES = "FEWFRAMES_NUM_PROCESSES"
ENV_PROCESS_ID = "FEWFRAMES_PROCESS_ID"
ENV_DISTRIBUTED = "FEWFRAMES_DISTRIBUTED"      # "1": let JAX detect SLURM / TPU pod / Open MPI
ENV_INIT_TIMEOUT = "FEWFRAMES_INIT_TIMEOUT"    # seconds to wait for every process (default 300)


def _int_env(env: Mapping[str, str], name: str) -> int:
  value = env.get(name, "")
  try:
    return int(value)
  except ValueError:
    raise ValueError(f"{ENV_COORDINATOR} is set, so {name} must be an integer; got {value!r}") from None


def distributed_args(env: Optional[Mapping[str, str]] = None) -> Optional[dict]:
  """The `jax.distributed.initialize` keyword arguments an environment asks for; None: one process.

  `FEWFRAMES_COORDINATOR=host:port` with `FEWFRAMES_NUM_PROCESSES` and `FEWFRAMES_PROCESS_ID` gives an
  explicit launch; `FEWFRAMES_DISTRIBUTED=1` lets JAX read the cluster's own environment (SLURM, TPU
  pods, Open MPI). Raises ValueError naming the variable when the environment is inconsistent.
  """
  env = os.environ if env is None else env
  kwargs = {}
  if env.get(ENV_INIT_TIMEOUT):
    kwargs["initialization_timeout"] = _int_env(env, ENV_INIT_TIMEOUT)
  coordinator = env.get(ENV_COORDINATOR, "")
  if coordinator:
    if ":" not in coordinator:
      raise ValueError(f"{ENV_COORDINATOR}={coordinator!r}: expected host:port")
    num_processes = _int_env(env, ENV_NUM_PROCESSES)
    process_id = _int_env(env, ENV_PROCESS_ID)
    if num_processes < 1 or not 0 <= process_id < num_processes:
      raise ValueError(f"{ENV_PROCESS_ID}={process_id} must be in [0, {ENV_NUM_PROCESSES}={num_processes})")
    return dict(kwargs, coordinator_address=coordinator, num_processes=num_processes, process_id=process_id)
  flag = env.get(ENV_DISTRIBUTED, "")
  if flag not in ("", "0", "1"):
    raise ValueError(f"{ENV_DISTRIBUTED}={flag!r}: expected 0 or 1")
  if flag == "1":
    return kwargs
  return None


def maybe_initialize_distributed() -> bool:
  """Calls `jax.distributed.initialize(...)` when launched as one of several processes.

  Must run before anything else touches a JAX device (main.py calls it first). On CPU the
  cross-process collectives use gloo (`jax_cpu_collectives_implementation`, JAX's default here).
  A single-process run does nothing. Returns True when it initialized.
  """
  kwargs = distributed_args()
  if kwargs is None:
    return False
  jax.distributed.initialize(**kwargs)
  return True


def make_mesh(devices=None) -> Mesh:
  """A 1-D mesh, axis `data`, over `devices` (default: every device of every process)."""
  return Mesh(np.asarray(jax.devices() if devices is None else devices), (DATA_AXIS,))


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def batch_sharded(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P(DATA_AXIS))


def _num_processes(mesh: Mesh) -> int:
  return len({d.process_index for d in mesh.devices.flat})


def check_batch_size(global_batch_size: int, mesh: Mesh, what: str = "data.batch_size") -> None:
  """A clear error, before anything compiles, when the batch does not split over the devices."""
  n = mesh.devices.size
  if global_batch_size < 1 or global_batch_size % n:
    raise ValueError(f"{what}={global_batch_size} is not divisible by the {n} devices of the mesh "
                     f"({jax.process_count()} process(es)): use a multiple of {n}")
  processes = _num_processes(mesh)
  if global_batch_size % processes:
    raise ValueError(f"{what}={global_batch_size} is not divisible by the {processes} processes")


def local_batch_size(global_batch_size: int, process_count: Optional[int] = None) -> int:
  """The rows of the global batch that one process reads (of `process_count`, default all)."""
  return global_batch_size // (jax.process_count() if process_count is None else process_count)


def to_global(local_batch: Mapping[str, np.ndarray], mesh: Mesh) -> dict:
  """Host-local numpy batch (this process's rows) -> dict of global arrays sharded on `data`.

  local_batch: {key: [b, ...]} with the same b for every key; the global batch has b x processes rows.
  Keys in HOST_ONLY_KEYS (ids) stay on the host and are dropped here.
  """
  sharding = batch_sharded(mesh)
  local_devices = len(mesh.local_devices)
  processes = _num_processes(mesh)
  out = {}
  rows = None
  for key, value in local_batch.items():
    if key in HOST_ONLY_KEYS:
      continue
    value = np.asarray(value)
    if rows is None:
      rows = value.shape[0] if value.ndim else None
      if rows is None or rows % local_devices:
        raise ValueError(f"batch[{key!r}] has shape {value.shape}: this process's rows must be a multiple "
                         f"of its {local_devices} local devices")
    elif value.ndim == 0 or value.shape[0] != rows:
      raise ValueError(f"batch[{key!r}] has shape {value.shape}; every key needs the same {rows} rows")
    global_shape = (rows * processes,) + value.shape[1:]
    out[key] = jax.make_array_from_process_local_data(sharding, value, global_shape)
  return out


def replicate(tree: Any, mesh: Mesh) -> Any:
  """Places a pytree of arrays, replicated, on every device of the mesh."""
  return jax.device_put(tree, replicated(mesh))


def local_copy(tree: Any) -> Any:
  """numpy copies of a pytree of replicated arrays (this process's copy; works multi-host)."""

  def one(x):
    if isinstance(x, jax.Array) and not x.is_fully_addressable:
      return np.asarray(x.addressable_data(0))
    return np.asarray(x)

  return jax.tree.map(one, tree)


def sum_over_processes(counts: Mapping[str, int]) -> Dict[str, int]:
  """{name: count} summed over all processes. Every process must call it, with the same names."""
  if jax.process_count() == 1:
    return {k: int(v) for k, v in counts.items()}
  from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
  keys = sorted(counts)
  gathered = multihost_utils.process_allgather(np.asarray([counts[k] for k in keys], np.int32))
  return {k: int(v) for k, v in zip(keys, np.asarray(gathered).reshape(-1, len(keys)).sum(0))}
