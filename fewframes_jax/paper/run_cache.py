"""Training runs cached by config: the one cache that the paper sweep and every study share.

A run is one `loop.train_and_evaluate(config, <out>/runs/<key>)`; its result (the evaluated network's eval
metrics and what it cost) is cached as `<out>/cells/<key>.json` with `config_hash(config)`. Then:
  * a rerun reads the cached result instead of training (`RunCache.result`);
  * an interrupted run resumes from its checkpoints: the same command trains on where it stopped, and a
    run stopped by a preemption signal raises `RunPreempted` (its checkpoint is saved) instead of caching
    a half-trained result;
  * a cached result whose config changed is stale: a `UserError` that names the file, or, with
    `recompute_stale`, deleted with its run folder and retrained.
A key may hold slashes (`hrnn/seed0/teacher`): runs and results are kept in sub-folders.
"""
import dataclasses
import hashlib
import json
import os
import shutil
import time
from typing import Any, Callable, Dict, List, Optional, Sequence

import ml_collections

from fewframes_jax import specs
from fewframes_jax.errors import UserError

Record = Dict[str, Any]
# Where a run reads other runs from: not part of what a run is (the output folder may move).
DEPENDENCY_FIELDS = ("teacher_workdir", "teacher_workdirs", "init_workdir")
# The settings of an optional feature, which shape nothing while the feature is off:
# (section, switch) -> (whether the switch's value turns it on, the section's fields that belong to it).
FEATURE_SETTINGS = {
    ("data", "tfds_name"): (bool, ("tfds_data_dir", "tfds_train_split", "tfds_eval_split")),
    # a learned selector's settings, used only when the student's frames are chosen by it
    ("student", "sampling"): (lambda sampling: sampling == specs.LEARNED, ("selector",)),
}
# A cached record's hashes of the runs it read from another cache (`RunCache.result`'s `reads`).
READ_HASHES = "read_hashes"
# Defaults that configs left unset until configs/base.py gave them as values (`specs.FORMERLY_UNSET`): at
# that value they are left out of the hash, as unset fields are. A learned selector's `train` and
# `streams` are not: every learned run the sweeps and studies cached named both.
HASHED_WHEN_CHANGED = tuple(path for path in specs.FORMERLY_UNSET
                            if path not in ("student.selector.train", "student.selector.streams"))


class RunPreempted(UserError):
  """A run stopped by a preemption signal: its checkpoint is saved, the same command resumes it."""


def _without_unset(tree: Any) -> Any:
  """A config dict without the fields that are unset (None or ''), at any depth, nor the sub-dicts left
  empty by that (a group of new fields, all unset)."""
  if isinstance(tree, dict):
    kept = {k: _without_unset(v) for k, v in tree.items() if v is not None and v != ""}
    return {k: v for k, v in kept.items() if not (isinstance(v, dict) and not v)}
  return tree


def config_hash(config: ml_collections.ConfigDict, dep_hashes: Sequence[str] = ()) -> str:
  """A hash of everything that shapes a run's result: its config (dependency locations excluded, the
  output folder may move) and the hashes of the runs it reads (a retrained teacher invalidates its
  serial students). Unset fields (None or '') are left out, so a config field added later whose default
  is unset (a feature that is off) keeps the cached results valid, and so are the settings of a feature
  that is off (`FEATURE_SETTINGS`: TFDS's when it is not the source, a selector's when the student's
  frames are not learned) and
  the defaults of `HASHED_WHEN_CHANGED` at their value; any other new or changed value makes them stale."""
  d = config.to_dict()
  for field in DEPENDENCY_FIELDS:
    d.pop(field, None)
  for (section, switch), (is_on, settings) in FEATURE_SETTINGS.items():
    if section in d and not is_on(d[section].get(switch)):
      for field in settings:
        d[section].pop(field, None)
  for path in HASHED_WHEN_CHANGED:
    *parents, name = path.split(".")
    block = d
    for parent in parents:
      block = block.get(parent) if isinstance(block, dict) else None
    if isinstance(block, dict) and block.get(name) == specs.FORMERLY_UNSET[path]:
      del block[name]
  d = _without_unset(d)
  if dep_hashes:
    d = {"config": d, "deps": list(dep_hashes)}
  return hashlib.sha256(json.dumps(d, sort_keys=True, default=str).encode()).hexdigest()[:16]


def read_json(path: str) -> Optional[Any]:
  try:
    with open(path) as f:
      return json.load(f)
  except FileNotFoundError:
    return None


def write_json(path: str, obj: Any) -> None:
  os.makedirs(os.path.dirname(path), exist_ok=True)
  tmp = path + ".tmp"
  with open(tmp, "w") as f:
    json.dump(obj, f, indent=1, sort_keys=True)
  os.replace(tmp, path)  # atomic: a killed job never leaves a half-written cache entry


@dataclasses.dataclass(frozen=True)
class Layout:
  """Where a sweep's or a study's files go under `out` (absolute); `report_name` prefixes its reports."""
  out: str
  report_name: str = ""

  def run(self, key: str) -> str:
    return os.path.join(self.out, "runs", key)

  def cell(self, key: str) -> str:
    return os.path.join(self.out, "cells", key + ".json")

  def timing(self, key: str) -> str:
    return os.path.join(self.out, "timing", key + ".json")

  def report(self, name: str) -> str:
    return os.path.join(self.out, f"{self.report_name}_{name}" if self.report_name else name)


def train_run(config: ml_collections.ConfigDict, workdir: str, *, evaluated: str = "student") -> Record:
  """Trains (or resumes) the run of `config` in `workdir`; returns the `evaluated` network's eval metrics
  plus steps, seconds, frames seen, and for a student its teacher's GAP when the run has one.
  Raises `RunPreempted` when a preemption signal stopped it."""
  from fewframes_jax.train import loop  # pylint: disable=g-import-not-at-top  (JAX, TensorFlow)
  start = time.perf_counter()
  out = loop.train_and_evaluate(config, workdir)
  if out["preempted"]:
    raise RunPreempted(f"{workdir}: stopped by a preemption signal at step {out['step']} (saved); rerun the "
                       "same command to resume")
  if evaluated not in out["eval"]:
    raise RuntimeError(f"the run in {workdir} returned no {evaluated} evaluation")
  record = {key: float(value) for key, value in out["eval"][evaluated].items()}
  record.update(steps=int(out["step"]), seconds=round(time.perf_counter() - start, 2),
                frames=int(config.data.max_frames if evaluated == "teacher" else config.student.k))
  if evaluated == "student" and "teacher" in out["eval"]:
    record["teacher_gap"] = float(out["eval"]["teacher"]["gap"])
  return record


@dataclasses.dataclass
class RunCache:
  """The cached results under `layout.out` (`<out>/cells/<key>.json`, each with its `config_hash`)."""
  layout: Layout
  recompute_stale: bool = False
  log: Callable[[str], None] = print

  def lookup(self, key: str, digest: str, reads: Sequence[str] = ()) -> Optional[Record]:
    """The cached result of `key` if its hash is `digest` and the runs it read are those of `reads`
    (`result`); None if there is none. A result of another config or of other read runs is a
    `UserError`, or with `recompute_stale` is deleted with the run's folder (None)."""
    path = self.layout.cell(key)
    record = read_json(path)
    if record is None:
      return None
    if record.get("config_hash") != digest:
      return self._stale(key, f"cached result of another config (hash {record.get('config_hash')} != {digest})")
    recorded = record.get(READ_HASHES)
    if reads and recorded is not None and recorded != list(reads):
      return self._stale(key, f"cached result of a run that read other runs (their hashes {recorded} != "
                              f"{list(reads)}: a teacher it reads was retrained)")
    return record

  def _stale(self, key: str, why: str) -> None:
    path = self.layout.cell(key)
    if not self.recompute_stale:
      raise UserError(f"{path}: {why}; delete it, or its whole folder, or use another --out (or --recompute_stale)")
    self.log(f"{key}: stale cache entry, recomputing")
    os.remove(path)
    shutil.rmtree(self.layout.run(key), ignore_errors=True)
    return None

  def store(self, key: str, digest: str, record: Record, **extra) -> Record:
    record = dict(record, config_hash=digest, key=key, **extra)
    write_json(self.layout.cell(key), record)
    return record

  def result(self, key: str, config: ml_collections.ConfigDict, *, evaluated: str = "student",
             deps: Sequence[str] = (), reads: Sequence[str] = (), train: bool = True,
             extend: Optional[Callable[[Record], Record]] = None, **extra) -> Optional[Record]:
    """The result of the run `key` of `config` (whose dependencies' hashes are `deps`): cached, or trained
    now and cached (`extend` adds to a new record, e.g. its FLOPs; `extra` is stored with it), its GAP
    logged either way. With `train=False`, None when it is not cached (a report of what has run).

    `reads`: the hashes of runs it reads from another cache (a study's teacher, `teacher_reads`), kept
    beside the config hash (`read_hashes`) rather than in it, so that results cached before they were
    recorded keep their hash (and are served as before, unchecked); a result whose read runs changed
    since it was trained is stale. Results derived from a result (an exit curve, a recall) carry its
    `result_stamp` and are recomputed when `same_result` says it changed."""
    digest = config_hash(config, deps)
    record = self.lookup(key, digest, reads)
    if record is not None:
      self.log(f"{key}: cached, GAP {record['gap']:.4f}")
      return record
    if not train:
      return None
    record = train_run(config, self.layout.run(key), evaluated=evaluated)
    if extend is not None:
      record = extend(record)
    if reads:
      extra[READ_HASHES] = list(reads)
    record = self.store(key, digest, record, **extra)
    self.log(f"{key}: GAP {record['gap']:.4f} ({record['seconds']:.0f} s)")
    return record


def result_stamp(record: Record) -> Record:
  """What identifies a cached result, for what is computed from it: its config hash and read hashes."""
  return {name: record[name] for name in ("config_hash", READ_HASHES) if name in record}


def same_result(entry: Record, record: Record) -> bool:
  """Whether `entry`, computed from a cached result and holding its `result_stamp`, is still that result's:
  the same config hash and the same read hashes (a run retrained against a new teacher keeps its config
  hash). An entry computed before read hashes were recorded is compared on the config hash alone."""
  return (entry.get("config_hash") == record.get("config_hash")
          and entry.get(READ_HASHES, record.get(READ_HASHES)) == record.get(READ_HASHES))


def teacher_reads(config: ml_collections.ConfigDict, teachers: Layout, teacher_key: str) -> List[str]:
  """`RunCache.result`'s `reads` for a run whose teacher is the run `teacher_key` of another cache (a
  study distilling the sweep's teacher): that result's config hash when the config reads a teacher and
  the result is cached there; none for a run without a teacher or a teacher trained by hand."""
  record = read_json(teachers.cell(teacher_key)) if config.get("teacher_workdir") else None
  return [record["config_hash"]] if record and record.get("config_hash") else []
