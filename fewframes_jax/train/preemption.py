"""Preemption: stop at the next step boundary when the job is told to stop, and save first.

SLURM and preemptible VMs send SIGTERM some seconds before they kill a job. A single-process run
installs a SIGTERM handler that only sets a flag; the training loop checks `should_stop(step)` after
each step, saves a checkpoint there, waits for it (the handler stays installed until the save is
written, so a repeated SIGTERM cannot kill it), and exits with status 0 and a message, so the job can be
restarted and resumes exactly where it stopped. A multi-process run leaves SIGTERM to JAX's
preemption service (started by `jax.distributed.initialize`), which agrees on one step for every
process; Orbax's `CheckpointManager.reached_preemption(step)` reports it.
"""
import signal
from typing import Optional


class PreemptionWatch:
  """`should_stop(step)`: a SIGTERM was received (single process), or every process reached the
  preemption sync point (multi-process, through the checkpoint manager). A context manager: the
  previous SIGTERM handler is restored on exit."""

  def __init__(self, manager, *, install_handler: bool):
    self._manager = manager
    self._install = install_handler
    self._previous = None
    self.received: Optional[int] = None  # the signal number, once one arrived

  def _handle(self, signum, frame):
    del frame
    self.received = signum

  def __enter__(self) -> "PreemptionWatch":
    if self._install:
      self._previous = signal.signal(signal.SIGTERM, self._handle)
    return self

  def __exit__(self, *exc) -> None:
    if self._install:
      signal.signal(signal.SIGTERM, self._previous)

  def should_stop(self, step: int) -> bool:
    return self.received is not None or self._manager.reached_preemption(step)
