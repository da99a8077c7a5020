"""The paper-table runner: grid construction, per-cell configs, table rendering, and a 2x2 micro-grid
end to end (tiny sizes, 3 steps) with its markdown, both PNGs, and a rerun served from the cache."""
import dataclasses
import json
import math
import os

import matplotlib.image
import numpy as np
import pytest

from configs import base
from fewframes_jax import plots
from fewframes_jax import tables
from launch import paper_tables as pt


# ------------------------------------------------------------------------------------------------
# Grid


def test_full_grid_lists_each_cell_once_after_its_dependencies():
  grid = tables.Grid(seeds=(0, 1))
  cells = tables.build_cells(grid)
  keys = [c.key for c in cells]
  assert len(keys) == len(set(keys))
  position = {k: i for i, k in enumerate(keys)}
  for cell in cells:
    for dep in cell.deps:
      assert position[dep] < position[cell.key], (cell.key, dep)
  # One teacher per (family, seed, fraction): every serial row of a seed reads the same teacher.
  teachers = [c for c in cells if c.mode == "teacher"]
  expected = {(f, s, 1.0) for s in (0, 1) for f in ("hrnn", "nextvlad", "lstm")}
  expected |= {("hrnn", s, f) for s in (0, 1) for f in (0.1, 0.25, 0.5)}
  assert {(c.family, c.seed, c.fraction) for c in teachers} == expected
  serial = [c for c in cells if c.mode == "serial" and len(c.teachers) == 1]
  assert {c.teachers[0] for c in serial if c.family == "hrnn" and c.fraction == 1.0 and c.seed == 0} == {
      "hrnn/seed0/teacher"}
  # Table 1 per seed: 6 baselines x 5 k + 8 rows x 5 k + a stage-2 fine-tune per L_rep row and k.
  table1 = [c for c in cells if c.seed == 0 and c.family == "hrnn" and c.fraction == 1.0 and c.mode != "teacher"
            and not c.intermediate and not c.student_family and c.k in tables.PAPER_KS]
  assert sum(c.mode == "student_only" for c in table1) >= 30
  assert sum(c.mode == "finetune" and not c.intermediate for c in table1) == 2 * 5
  # Ensemble: a serial cell reading two teachers of different families.
  ensemble = [c for c in cells if len(c.teachers) == 2]
  assert len(ensemble) == 2 and set(ensemble[0].teachers) == {"nextvlad/seed0/teacher", "hrnn/seed0/teacher"}


def test_grid_rejects_unknown_names():
  with pytest.raises(ValueError, match="unknown section"):
    tables.Grid(sections=("table9",))
  with pytest.raises(ValueError, match="unknown baseline"):
    tables.Grid(baselines=("every_other",))
  with pytest.raises(ValueError, match="unknown row"):
    tables.Grid(rows=(("serial", "rep_kd"),))


def test_cell_configs_set_mode_losses_teachers_and_data():
  preset = pt.PRESETS["small"]
  where = lambda key: "/runs/" + key
  c = pt.cell_config(tables.distill_cell("hrnn", 2, "serial", "rep", 10), preset, workdir_of=where)
  assert (c.mode, c.seed, c.student.k, c.teacher_workdir) == ("serial", 2, 10, "/runs/hrnn/seed2/teacher")
  assert (c.loss.ce, c.loss.rep, c.loss.pred, c.loss.rep_intermediate) == (0.0, 1.0, 0.0, 0.0)
  assert c.data.max_frames == 60 and c.teacher.hrnn.num_blocks == 10 and c.student.hrnn.num_blocks == 2
  assert c.optim.learning_rate == 0.01
  c = pt.cell_config(tables.distill_cell("hrnn", 0, "parallel", "rep_pred_ce", 30, intermediate=True), preset,
                     workdir_of=where)
  assert (c.loss.ce, c.loss.rep, c.loss.pred, c.loss.rep_intermediate) == (1.0, 0.0, 1.0, 1.0)
  assert c.teacher_workdir == ""
  ft = pt.cell_config(tables.finetune_cell(tables.distill_cell("hrnn", 0, "serial", "rep", 6)), preset,
                      workdir_of=where)
  assert (ft.mode, ft.init_workdir, ft.teacher_workdir) == ("finetune", "/runs/hrnn/seed0/serial_rep_k6", "")
  assert ft.train.num_steps == preset.finetune_steps
  base_cell = pt.cell_config(tables.baseline_cell("hrnn", 0, 15, "first_middle_last", 0.25), preset,
                             workdir_of=where)
  assert (base_cell.mode, base_cell.student.sampling, base_cell.data.train_fraction) == (
      "student_only", "first_middle_last", 0.25)
  # Cross-family: an H-RNN student of a NeXtVLAD teacher, with its own head and the H-RNN optimizer.
  cross = pt.cell_config(tables.distill_cell("nextvlad", 0, "serial", "rep_pred_ce", 10, student_family="hrnn"),
                         preset, workdir_of=where)
  assert (cross.teacher.name, cross.student.name, cross.share_classifier) == ("nextvlad", "hrnn", False)
  assert cross.teacher_workdir == "/runs/nextvlad/seed0/teacher" and cross.optim.learning_rate == 0.01
  assert cross.optim.clip_mode == base.FAMILY_OPTIM["hrnn"]["clip_mode"]
  ens = pt.cell_config(tables.ensemble_cell(("nextvlad", "hrnn"), "hrnn", 0, "rep_pred_ce", 10), preset,
                       workdir_of=where)
  assert ens.teacher_workdirs == "/runs/nextvlad/seed0/teacher,/runs/hrnn/seed0/teacher"
  assert not ens.share_classifier and ens.student.name == "hrnn"
  # The cache hash ignores where dependencies live, not what the cell is.
  moved = pt.cell_config(tables.distill_cell("hrnn", 2, "serial", "rep", 10), preset, workdir_of=lambda k: "/x/" + k)
  same = pt.cell_config(tables.distill_cell("hrnn", 2, "serial", "rep", 10), preset, workdir_of=where)
  other = pt.cell_config(tables.distill_cell("hrnn", 3, "serial", "rep", 10), preset, workdir_of=where)
  assert pt.config_hash(moved) == pt.config_hash(same) != pt.config_hash(other)
  # ... and a retrained teacher (another dependency hash) invalidates its students.
  assert pt.config_hash(same, ["aaaa"]) != pt.config_hash(same, ["bbbb"]) != pt.config_hash(same)
  teacher = pt.cell_config(tables.teacher_cell("hrnn", 0), preset, workdir_of=where)
  assert teacher.train.num_steps == preset.teacher_steps > c.train.num_steps


# ------------------------------------------------------------------------------------------------
# Rendering


def _fake_results(grid):
  rng = np.random.default_rng(0)
  return {c.key: {"gap": float(rng.uniform(0.3, 0.9)), "map_all_classes": float(rng.uniform(0.1, 0.5)),
                  "flops": 1e6 * (c.k or 60), "params": 1000}
          for c in tables.build_cells(grid)}


def test_table1_cells_are_seed_means_with_the_best_in_bold():
  grid = tables.Grid(seeds=(0, 1, 2), ks=(6, 10), sections=("table1",))
  results = _fake_results(grid)
  rows = tables.parse_markdown_table(tables.table1_markdown(results, grid, "hrnn"))
  assert rows[0] == ["Model", "k=6 GAP", "k=6 mAP†", "k=10 GAP", "k=10 mAP†"]
  by_label = {r[0]: r[1:] for r in rows[1:]}
  gaps = [results[f"hrnn/seed{s}/random_k10"]["gap"] for s in range(3)]
  mean, sd = np.mean(gaps), np.std(gaps, ddof=1)
  assert by_label["Random-k"][2].strip("*") == f"{mean:.3f}±{sd:.3f}"
  # L_rep alone is reported after its stage-2 fine-tune.
  ft = [results[f"hrnn/seed{s}/serial_rep_k6_ft"]["gap"] for s in range(3)]
  assert by_label["Serial, L_rep (+ stage-2 CE fine-tune)"][0].strip("*").startswith(f"{np.mean(ft):.3f}±")
  # Exactly one bold cell per column, on the highest mean.
  for col in range(4):
    values = [r[col] for label, r in by_label.items()
              if r[col] and not label.startswith("*") and "Teacher" not in label]
    bold = [v for v in values if v.startswith("**")]
    assert len(bold) == 1
    assert float(bold[0].strip("*").split("±")[0]) == max(float(v.strip("*").split("±")[0]) for v in values)


def test_tables_show_a_dash_for_missing_cells_and_single_seed_values():
  grid = tables.Grid(seeds=(0,), ks=(10,), sections=("table1", "table2", "table4", "cross"), anchor_k=10)
  results = {"hrnn/seed0/uniform_k10": {"gap": 0.5, "map_all_classes": 0.25}}
  t1 = {r[0]: r[1:] for r in tables.parse_markdown_table(tables.table1_markdown(results, grid, "hrnn"))}
  assert t1["Uniform-k"] == ["**0.500**", "**0.250**"] and t1["Random-k"] == ["–", "–"]
  t2 = tables.parse_markdown_table(tables.table2_markdown(results, grid))
  assert t2[0][2:] == ["10%", "25%", "50%", "100%"]
  assert [r for r in t2 if r[:2] == ["Uniform-k", "GAP"]][0][2:] == ["–", "–", "–", "0.500"]
  assert len(tables.parse_markdown_table(tables.table4_markdown(results, grid))) == 1 + 6
  cross = tables.parse_markdown_table(tables.cross_markdown(results, grid))
  assert ["none", "hrnn, Uniform-k", "10", "0.500", "0.250", "–"] in cross
  assert any("ensemble" in r[0] for r in cross)


def test_pareto_front_matches_a_naive_definition():
  rng = np.random.default_rng(1)
  points = [{"flops": float(f), "gap": float(g)} for f, g in zip(rng.integers(1, 20, 40), rng.uniform(0, 1, 40))]
  front = plots.pareto_front(points)
  naive = [p for p in points
           if not any((q["flops"] <= p["flops"] and q["gap"] > p["gap"]) or
                      (q["flops"] < p["flops"] and q["gap"] >= p["gap"]) for q in points)]
  assert sorted(map(id, front)) == sorted(map(id, naive))
  assert [p["flops"] for p in front] == sorted(p["flops"] for p in front)
  gaps = [p["gap"] for p in front]
  assert gaps == sorted(gaps)  # along the front, more compute buys more accuracy


# ------------------------------------------------------------------------------------------------
# End to end


def _table(markdown: str, title: str):
  return tables.parse_markdown_table(markdown.split(title, 1)[1])


def test_micro_grid_end_to_end_then_rerun_from_cache(tmp_path, monkeypatch):
  grid = pt.make_grid(pt.PRESETS["tiny"], families=("nextvlad",), ks=(6, 10), baselines=("uniform",),
                      rows=(("serial", "rep_pred_ce"),), sections=("table1", "table3"), table3_ks=(10,))
  out = str(tmp_path / "out")
  logs = []
  sweep = pt.run(preset="tiny", out=out, grid=grid, jax_cache_dir="", log=logs.append)
  assert (sweep.trained, sweep.cached) == (5, 0)

  markdown = open(sweep.markdown_path).read()
  rows = _table(markdown, "## Table 1")
  assert rows[0] == ["Model", "k=6 GAP", "k=6 mAP†", "k=10 GAP", "k=10 mAP†"]
  by_label = {r[0]: r[1:] for r in rows[1:]}
  for label, key in (("Uniform-k", "nextvlad/seed0/uniform_k{k}"),
                     ("Serial, L_rep, L_pred, L_CE", "nextvlad/seed0/serial_rep_pred_ce_k{k}")):
    for i, k in enumerate((6, 10)):
      cached = json.load(open(os.path.join(out, "cells", key.format(k=k) + ".json")))
      assert cached["steps"] == 3 and cached["frames"] == k and cached["flops"] > 0
      assert by_label[label][2 * i].strip("*") == f"{cached['gap']:.3f}"
      assert by_label[label][2 * i + 1].strip("*") == f"{cached['map_all_classes']:.3f}"
  teacher = json.load(open(os.path.join(out, "cells", "nextvlad/seed0/teacher.json")))
  assert by_label["Teacher-Skyline (all frames)"][-2] == f"{teacher['gap']:.3f}"
  t3 = {r[0]: r for r in _table(markdown, "## Table 3")[1:]}
  assert t3["Teacher-Skyline"][1] == "20" and t3["k = 10 (Serial, L_rep, L_pred, L_CE)"][1] == "10"
  assert float(t3["k = 10 (Serial, L_rep, L_pred, L_CE)"][4]) < float(t3["Teacher-Skyline"][4])  # fewer FLOPs

  for path in sweep.plot_paths:
    image = matplotlib.image.imread(path)
    assert image.ndim == 3 and image.shape[0] > 200 and image.shape[1] > 200
    assert image[..., :3].std() > 0.01  # something was drawn

  # A rerun trains nothing and times nothing: every cell and timing comes from the cache.
  def refuse(*args, **kwargs):
    raise AssertionError("the rerun retrained or retimed a cached cell")

  from fewframes_jax import train_loop
  monkeypatch.setattr(train_loop, "train_and_evaluate", refuse)
  monkeypatch.setattr(pt, "time_eval", refuse)
  again = pt.run(preset="tiny", out=out, grid=grid, jax_cache_dir="", log=logs.append)
  assert (again.trained, again.cached) == (0, 5)
  assert open(again.markdown_path).read() == markdown

  # A cached cell from another config is an error, not a silent reuse.
  path = os.path.join(out, "cells", "nextvlad/seed0/uniform_k6.json")
  record = json.load(open(path))
  record["config_hash"] = "0" * 16
  json.dump(record, open(path, "w"))
  with pytest.raises(ValueError, match="uniform_k6.json: cached result of another config"):
    pt.run(preset="tiny", out=out, grid=grid, jax_cache_dir="", log=logs.append)
  # With recompute_stale, that cell alone is retrained, in a fresh workdir.
  calls = []

  def fake_run_cell(cell, config, workdir):
    calls.append((cell.key, os.path.exists(workdir)))
    return dict(record, seconds=0.0)

  monkeypatch.setattr(pt, "run_cell", fake_run_cell)
  again = pt.run(preset="tiny", out=out, grid=grid, jax_cache_dir="", log=logs.append, recompute_stale=True)
  assert calls == [("nextvlad/seed0/uniform_k6", False)] and (again.trained, again.cached) == (1, 4)
  assert json.load(open(path))["config_hash"] != "0" * 16


def test_ordering_checks_count_the_seeds_where_a_claim_holds():
  grid = tables.Grid(seeds=(0, 1), ks=(10,), sections=("table1",), baselines=("uniform", "random", "first", "last"),
                     rows=(("serial", "rep_pred_ce"),))
  gaps = {0: dict(teacher=0.9, student=0.8, uniform=0.7, random=0.6, first=0.5, last=0.4),
          1: dict(teacher=0.9, student=0.65, uniform=0.7, random=0.75, first=0.5, last=0.4)}
  results = {}
  for s, g in gaps.items():
    results[tables.teacher_cell("hrnn", s).key] = {"gap": g["teacher"]}
    results[tables.distill_cell("hrnn", s, "serial", "rep_pred_ce", 10).key] = {"gap": g["student"]}
    for m in ("uniform", "random", "first", "last"):
      results[tables.baseline_cell("hrnn", s, 10, m).key] = {"gap": g[m]}
  checks = dict(tables.ordering_checks(results, grid, "hrnn"))
  assert checks["Teacher-Skyline > every teacher-student row"][10] == (2, 2)
  assert checks["Serial, L_rep, L_pred, L_CE > Uniform-k"][10] == (1, 2)
  assert checks["Uniform-k > Random-k"][10] == (1, 2)
  assert checks["Random-k > First-k and Last-k"][10] == (2, 2)
  assert dict(tables.ordering_checks(results, grid, "hrnn", "map_all_classes"))["Uniform-k > Random-k"][10] == (0, 0)


@pytest.mark.parametrize("name", sorted(pt.PRESETS))
def test_every_preset_builds_a_config_for_every_cell_of_its_full_grid(name):
  preset = pt.PRESETS[name]
  grid = pt.make_grid(preset, seeds=(0,), rows=tables.ALL_ROWS)
  for cell in tables.build_cells(grid):
    c = pt.cell_config(cell, preset, workdir_of=lambda key: "/runs/" + key)
    assert c.seed == 0 and c.data.train_fraction == cell.fraction
    assert c.mode == cell.mode and (c.mode == "teacher" or c.student.name == cell.student)
    if c.mode in ("parallel", "serial"):
      assert c.loss.ce + c.loss.rep + c.loss.rep_intermediate + c.loss.pred > 0
  if name == "paper":  # the paper's sizes are untouched, and the H-RNN runs use the H-RNN batch size
    c = pt.cell_config(tables.teacher_cell("hrnn", 0), preset, workdir_of=str)
    assert (c.teacher.hrnn.cells, c.data.max_frames, c.data.batch_size) == (1024, 300, 256)
    assert c.train.num_steps == 0 and c.train.num_epochs == 5.0


def test_command_line_rows_baselines_and_schedule_scale():
  args = pt.parse_args(["--out=/x", "--rows=serial:pred_ce,parallel:rep_ce", "--baselines=uniform",
                        "--schedule_scale=3"])
  assert args.rows == (("serial", "pred_ce"), ("parallel", "rep_ce")) and args.baselines == ("uniform",)
  assert pt.parse_args(["--out=/x", "--rows=all"]).rows == tables.ALL_ROWS
  with pytest.raises(SystemExit):
    pt.parse_args(["--out=/x", "--rows=serial"])
  preset = pt.PRESETS["small"]
  longer = dataclasses.replace(preset, schedule_scale=3.0)
  where = lambda key: "/runs/" + key
  for cell, steps in ((tables.teacher_cell("hrnn", 0), preset.teacher_steps),
                      (tables.distill_cell("hrnn", 0, "serial", "pred_ce", 10), 300),
                      (tables.finetune_cell(tables.distill_cell("hrnn", 0, "serial", "rep", 10)), preset.finetune_steps)):
    assert pt.cell_config(cell, preset, workdir_of=where).train.num_steps == steps
    assert pt.cell_config(cell, longer, workdir_of=where).train.num_steps == 3 * steps
  paper = dataclasses.replace(pt.PRESETS["paper"], schedule_scale=2.0)  # counts epochs, not steps
  c = pt.cell_config(tables.teacher_cell("hrnn", 0), paper, workdir_of=where)
  assert (c.train.num_steps, c.train.num_epochs) == (0, 10.0)
