"""Orbax checkpoints under `workdir/checkpoints`, and the `restore` API for users.

Each checkpoint step holds three plain Orbax items:
  state  : {'step', 'rng', 'teacher': {'params', 'batch_stats', 'opt_state'} | None, 'student': ...}
  config : the resolved run config, as JSON
  meta   : JSON: the eval metrics of that step (if any) and the input position (each process's next
           record in the training stream, `data/stream.py`)
Saves are atomic (Orbax writes to a temporary folder and renames it when complete), so a kill during
a save leaves the previous checkpoint as the latest complete one.

Kept: the latest `train.keep_checkpoints` steps and, in addition, the step with the best student
eval GAP (the teacher's in teacher mode): the paper selects the model on held-out data.

Someone with only orbax-checkpoint installed can read the arrays without this project:
  ocp.CheckpointManager(workdir + "/checkpoints").restore(step)['state']
"""
import dataclasses
import json
import os
from typing import Any, Dict, List, Optional

import jax
import orbax.checkpoint as ocp
from orbax.checkpoint import checkpoint_managers

from fewframes_jax import specs
from fewframes_jax.specs import DistillState, NetState

ITEMS = ("state", "config", "meta")


def checkpoint_dir(workdir: str) -> str:
  return os.path.join(os.path.abspath(workdir), "checkpoints")


def _best_metric(metrics: Dict[str, Any]) -> float:
  return float(metrics.get("gap", float("-inf")))


def make_manager(workdir: str, *, keep: int = 3, read_only: bool = False) -> ocp.CheckpointManager:
  """The run's CheckpointManager: keeps the latest `keep` steps plus the best by eval GAP."""
  policy = checkpoint_managers.AnyPreservationPolicy([
      checkpoint_managers.LatestN(n=keep),
      checkpoint_managers.BestN(get_metric_fn=_best_metric, reverse=False, n=1,
                                keep_checkpoints_without_metrics=False),
  ])
  options = ocp.CheckpointManagerOptions(preservation_policy=policy, read_only=read_only,
                                         create=not read_only)
  return ocp.CheckpointManager(checkpoint_dir(workdir), item_names=ITEMS, options=options)


def state_to_tree(state) -> Dict[str, Any]:
  """DistillState -> the plain nested dict that is saved (None for an absent network)."""

  def net(n):
    if n is None:
      return None
    return {"params": n.params, "batch_stats": n.batch_stats, "opt_state": n.opt_state}

  return {"step": state.step, "rng": state.rng, "teacher": net(state.teacher), "student": net(state.student)}


def tree_to_state(tree: Dict[str, Any]):

  def net(n):
    if n is None:
      return None
    return NetState(params=n["params"], batch_stats=n["batch_stats"], opt_state=n["opt_state"])

  return DistillState(step=tree["step"], rng=tree["rng"], teacher=net(tree["teacher"]),
                      student=net(tree["student"]))


def save(manager: ocp.CheckpointManager, state, spec: specs.RunSpec, *,
         metrics: Optional[Dict[str, float]] = None, data_position: Optional[Dict[str, Any]] = None,
         force: bool = False) -> bool:
  """Saves one step, asynchronously: the call returns once the arrays are copied off the device and
  Orbax writes them in the background (a next `save` first waits for this one; call
  `manager.wait_until_finished()` before exiting). `metrics` ({'gap': ...}) ranks the best step;
  `data_position` (JSON) is where the input stream continues (`train/loop.py:saved_positions`). The
  run's resolved config (`spec.saved`) is saved beside the state."""
  step = int(jax.device_get(state.step))
  meta = {"step": step, "metrics": metrics or {}, "data_position": data_position}
  return manager.save(
      step,
      args=ocp.args.Composite(state=ocp.args.StandardSave(state_to_tree(state)),
                              config=ocp.args.JsonSave(spec.saved),
                              meta=ocp.args.JsonSave(meta)),
      metrics=metrics, force=force)


def restore_state(manager: ocp.CheckpointManager, step: int, abstract_state):
  """Restores a DistillState into the structure (and shardings) of `abstract_state`."""
  target = jax.tree.map(ocp.utils.to_shape_dtype_struct, state_to_tree(abstract_state))
  restored = manager.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore(target),
                                                            meta=ocp.args.JsonRestore()))
  return tree_to_state(restored["state"]), restored["meta"]


def read_json_item(workdir: str, step: int, item: str) -> Dict[str, Any]:
  path = os.path.join(checkpoint_dir(workdir), str(step), item, "metadata")
  with open(path) as f:
    return json.load(f)


def complete_steps(workdir: str) -> List[int]:
  """The steps of `workdir`'s complete checkpoints, ascending (Orbax names a step folder by its number
  only once its save is complete). Raises FileNotFoundError when there is no checkpoints folder."""
  ckpt = checkpoint_dir(workdir)
  if not os.path.isdir(ckpt):
    raise FileNotFoundError(f"no checkpoints in {ckpt!r} (is the workdir right, and did training save?)")
  return sorted(int(name) for name in os.listdir(ckpt) if name.isdigit())


def saved_steps(workdir: str) -> List[int]:
  """`complete_steps`, or [] when `workdir` has no checkpoints folder (a run not started there)."""
  return complete_steps(workdir) if os.path.isdir(checkpoint_dir(workdir)) else []


def has_checkpoint(workdir: str) -> bool:
  """Whether `workdir` holds a complete checkpoint."""
  return bool(saved_steps(workdir))


def find_step(workdir: str, *, step: Optional[int] = None, best: bool = False) -> int:
  """The step to restore: `step`, the best by eval GAP, or the latest. Clear error when none."""
  ckpt = checkpoint_dir(workdir)
  steps = complete_steps(workdir)
  if not steps:
    raise FileNotFoundError(f"no complete checkpoint in {ckpt!r}")
  if step is not None:
    if step not in steps:
      raise FileNotFoundError(f"step {step} not in {ckpt!r}; available: {steps}")
    return step
  if best:
    scored = [(read_json_item(workdir, s, "meta").get("metrics", {}).get("gap"), s) for s in steps]
    scored = [(g, s) for g, s in scored if g is not None]
    if not scored:
      raise FileNotFoundError(f"no checkpoint in {ckpt!r} has an eval GAP; use best=False")
    return max(scored)[1]
  return steps[-1]


@dataclasses.dataclass
class Restored:
  """What `restore` returns. `variables`/`student_variables` are {'params', 'batch_stats'} that
  `model.apply(variables, frames, num_frames, train=False)` takes. A student that shared the teacher's
  classifier gets a copy of that classifier in its variables, so it predicts on its own. `spec` is the
  run's, rebuilt from its saved config (`spec.saved`)."""
  spec: specs.RunSpec
  step: int
  model: Any
  variables: Optional[Dict[str, Any]]
  student_model: Any
  student_variables: Optional[Dict[str, Any]]
  metrics: Dict[str, Any]

  def network(self, which: str = "student", *, budget: Optional[int] = None):
    """The teacher or the student as an `inference.Network`: ready to score uint8 frames (its frame
    selection included; an any-k student at `budget`, default its config's). Raises ValueError when the
    run has no such network."""
    from fewframes_jax import inference  # pylint: disable=g-import-not-at-top
    return inference.Network.from_restored(self, which, budget=budget)


def restore(workdir: str, step: Optional[int] = None, best: bool = False) -> Restored:
  """Loads a run for inference: its spec, the teacher and student models and their variables.

  No TensorFlow is needed. Arrays come back as numpy/jax arrays on the default device.
  """
  from fewframes_jax import inference  # pylint: disable=g-import-not-at-top
  from fewframes_jax.models import build_model  # pylint: disable=g-import-not-at-top

  step = find_step(workdir, step=step, best=best)
  spec = specs.RunSpec.from_config(read_json_item(workdir, step, "config"))
  meta = read_json_item(workdir, step, "meta")
  # A plain checkpointer on the step's item: a read-only CheckpointManager would log Orbax's
  # "read only" warnings on every call, and no manager is needed to read one finished step.
  with ocp.StandardCheckpointer() as checkpointer:
    tree = checkpointer.restore(os.path.join(checkpoint_dir(workdir), str(step), "state"))
  kw = dict(num_classes=spec.data.num_classes, feature_sizes=spec.data.feature_sizes, dtype=spec.dtype)
  networks = {which: inference.network_variables(tree, which) if tree.get(which) else None
              for which in inference.NETWORKS}
  return Restored(
      spec=spec, step=step,
      model=build_model(spec.teacher, **kw) if networks["teacher"] else None,
      variables=networks["teacher"],
      student_model=build_model(spec.student, **kw) if networks["student"] else None,
      student_variables=networks["student"],
      metrics=meta.get("metrics", {}))
