"""The sweep runner: a 2x2 micro-grid end to end (tiny sizes, 3 steps) with its markdown, both PNGs, Table
3's timing, and reruns served from the cache."""
import json
import os
import shutil

import matplotlib.image
import pytest

from configs import paper as paper_configs
from fewframes_jax.errors import UserError
from fewframes_jax.paper import eval_time
from fewframes_jax.paper import render
from fewframes_jax.paper import sweep

SMALL = paper_configs.PRESETS["small"]


def _config(cell, where=lambda key: "/runs/" + key):
  return paper_configs.cell_config(cell, SMALL, workdir_of=where)


def _table(markdown: str, title: str):
  return render.parse_markdown_table(markdown.split(title, 1)[1])


def test_micro_grid_end_to_end_then_rerun_from_cache(tmp_path, monkeypatch):
  tiny = paper_configs.PRESETS["tiny"]
  grid = tiny.make_grid(families=("nextvlad",), ks=(10,), baselines=("uniform",),
                        rows=(("serial", "rep_pred_ce"),), sections=("table1", "table3"), table3_ks=(10,))
  out = str(tmp_path / "out")
  logs = []

  def run(**kw):
    return sweep.run(preset=tiny, cell_config=paper_configs.cell_config, out=out, grid=grid, jax_cache_dir="",
                     log=logs.append, **kw)

  swept = run()
  assert (swept.trained, swept.cached) == (3, 0)  # the teacher, Uniform-k, the serial student

  markdown = open(swept.markdown_path).read()
  rows = _table(markdown, "## Table 1")
  assert rows[0] == ["Model", "k=10 GAP", "k=10 mAP†"]
  by_label = {r[0]: r[1:] for r in rows[1:]}
  for label, key in (("Uniform-k", "nextvlad/seed0/uniform_k{k}"),
                     ("Serial, L_rep, L_pred, L_CE", "nextvlad/seed0/serial_rep_pred_ce_k{k}")):
    for i, k in enumerate((10,)):
      cached = json.load(open(os.path.join(out, "cells", key.format(k=k) + ".json")))
      assert cached["steps"] == 3 and cached["frames"] == k and cached["flops"] > 0
      assert by_label[label][2 * i].strip("*") == f"{cached['gap']:.3f}"
      assert by_label[label][2 * i + 1].strip("*") == f"{cached['map_all_classes']:.3f}"
  teacher = json.load(open(os.path.join(out, "cells", "nextvlad/seed0/teacher.json")))
  assert by_label["Teacher-Skyline (all frames)"][-2] == f"{teacher['gap']:.3f}"
  timing = json.load(open(os.path.join(out, "timing", "nextvlad/seed0/serial_rep_pred_ce_k10.json")))
  assert set(timing) == {"seconds", "videos", "flops", "params", "frames"} and timing["videos"] == 24
  t3 = {r[0]: r for r in _table(markdown, "## Table 3")[1:]}
  assert t3["Teacher-Skyline"][1] == "20" and t3["k = 10 (Serial, L_rep, L_pred, L_CE)"][1] == "10"
  assert float(t3["k = 10 (Serial, L_rep, L_pred, L_CE)"][4]) < float(t3["Teacher-Skyline"][4])  # fewer FLOPs
  last = json.load(open(os.path.join(out, "last_run.json")))
  assert (last["trained"], last["cached"], last["preset"]) == (3, 0, "tiny")

  for path in swept.plot_paths:
    image = matplotlib.image.imread(path)
    assert image.ndim == 3 and image.shape[0] > 200 and image.shape[1] > 200
    assert image[..., :3].std() > 0.01  # something was drawn

  # A rerun trains nothing and times nothing: every cell and timing comes from the cache.
  def refuse(*args, **kwargs):
    raise AssertionError("the rerun retrained or retimed a cached cell")

  from fewframes_jax.train import loop  # pylint: disable=g-import-not-at-top
  monkeypatch.setattr(loop, "train_and_evaluate", refuse)
  monkeypatch.setattr(eval_time, "time_eval", refuse)
  again = run()
  assert (again.trained, again.cached) == (0, 3)
  assert open(again.markdown_path).read() == markdown

  # A cached cell from another config is an error, not a silent reuse.
  path = os.path.join(out, "cells", "nextvlad/seed0/uniform_k10.json")
  record = json.load(open(path))
  record["config_hash"] = "0" * 16
  json.dump(record, open(path, "w"))
  with pytest.raises(UserError, match="uniform_k10.json: cached result of another config"):
    run()
  # With recompute_stale, that cell alone is retrained, in a fresh workdir.
  calls = []

  def fake_run_cell(cell, config, workdir):
    calls.append((cell.key, os.path.exists(workdir)))
    return dict(record, seconds=0.0)

  monkeypatch.setattr(sweep, "run_cell", fake_run_cell)
  again = run(recompute_stale=True)
  assert calls == [("nextvlad/seed0/uniform_k10", False)] and (again.trained, again.cached) == (1, 2)
  assert json.load(open(path))["config_hash"] != "0" * 16

  # A run folder is not kept with the cache: a serial cell to train whose teacher's run is gone retrains
  # the teacher first (its cached record stands when the retrained GAP is the same, is replaced and
  # said when it is not); Table 3 retrains the runs it times. Training is faked here (its determinism
  # is tested in test_resume): the fake writes a checkpoint folder as a run does.
  calls.clear()
  gaps = {"nextvlad/seed0/teacher": teacher["gap"] + 0.5}

  def fake_training(cell, config, workdir):
    calls.append(cell.key)
    os.makedirs(os.path.join(workdir, "checkpoints", "3"), exist_ok=True)
    return dict(record, gap=gaps.get(cell.key, record["gap"]), seconds=0.0)

  monkeypatch.setattr(sweep, "run_cell", fake_training)
  logs.clear()
  shutil.rmtree(os.path.join(out, "runs", "nextvlad/seed0/teacher"))
  os.remove(os.path.join(out, "cells", "nextvlad/seed0/serial_rep_pred_ce_k10.json"))
  again = run()
  assert calls == ["nextvlad/seed0/teacher", "nextvlad/seed0/serial_rep_pred_ce_k10"]
  assert (again.trained, again.cached) == (2, 1)
  assert any("nextvlad/seed0/teacher: its run folder has no checkpoint and is read" in line for line in logs), logs
  assert any("retrained GAP" in line and "the cache now holds the retrained result" in line for line in logs)
  assert json.load(open(os.path.join(out, "cells", "nextvlad/seed0/teacher.json")))["gap"] == teacher["gap"] + 0.5
  assert again.results["nextvlad/seed0/teacher"]["gap"] == teacher["gap"] + 0.5
