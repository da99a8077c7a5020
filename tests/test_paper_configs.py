"""configs/paper.py: the presets and each cell's training config (mode, losses, teachers, data,
schedules), and `get_config`, which builds the same config for one cell by hand."""
import dataclasses

import pytest

from configs import base
from configs import paper as paper_configs
from fewframes_jax import run_config
from fewframes_jax.errors import UserError
from fewframes_jax.paper import grid as grid_lib
from fewframes_jax.paper.grid import baseline_cell, distill_cell, ensemble_cell, finetune_cell, teacher_cell

PRESETS = paper_configs.PRESETS


def _config(cell, preset=PRESETS["small"], **kw):
  return paper_configs.cell_config(cell, preset, workdir_of=lambda key: "/runs/" + key, **kw)


def _losses(c):
  return c.loss.ce, c.loss.rep, c.loss.pred, c.loss.rep_intermediate


def test_cell_configs_set_mode_losses_teachers_and_data():
  preset = PRESETS["small"]
  c = _config(distill_cell("hrnn", 2, "serial", "rep", 10))
  assert (c.mode, c.seed, c.student.k, c.teacher_workdir) == ("serial", 2, 10, "/runs/hrnn/seed2/teacher")
  assert _losses(c) == (0.0, 1.0, 0.0, 0.0) and c.optim.learning_rate == 0.01
  assert c.data.max_frames == 60 and c.teacher.hrnn.num_blocks == 10
  c = _config(distill_cell("hrnn", 0, "parallel", "rep_pred_ce", 30, intermediate=True))
  assert _losses(c) == (1.0, 0.0, 1.0, 1.0) and c.teacher_workdir == ""
  ft = _config(finetune_cell(distill_cell("hrnn", 0, "serial", "rep", 6)))
  assert (ft.mode, ft.init_workdir, ft.teacher_workdir) == ("finetune", "/runs/hrnn/seed0/serial_rep_k6", "")
  assert ft.train.num_steps == preset.finetune_steps
  b = _config(baseline_cell("hrnn", 0, 15, "first_middle_last", 0.25))
  assert (b.mode, b.student.sampling, b.data.train_fraction) == ("student_only", "first_middle_last", 0.25)
  # Cross-family: an H-RNN student of a NeXtVLAD teacher, with its own head and the H-RNN optimizer.
  cross = _config(distill_cell("nextvlad", 0, "serial", "rep_pred_ce", 10, student_family="hrnn"))
  assert (cross.teacher.name, cross.student.name, cross.share_classifier) == ("nextvlad", "hrnn", False)
  assert cross.teacher_workdir == "/runs/nextvlad/seed0/teacher" and cross.optim.learning_rate == 0.01
  assert cross.optim.clip_mode == base.FAMILY_OPTIM["hrnn"]["clip_mode"]
  ens = _config(ensemble_cell(("nextvlad", "hrnn"), "hrnn", 0, "rep_pred_ce", 10))
  assert ens.teacher_workdirs == "/runs/nextvlad/seed0/teacher,/runs/hrnn/seed0/teacher"
  assert not ens.share_classifier and ens.student.name == "hrnn"
  teacher = _config(teacher_cell("hrnn", 0))
  assert teacher.train.num_steps == preset.teacher_steps > c.train.num_steps
  # Real data replaces the bundled dataset's fields.
  real = _config(teacher_cell("hrnn", 0), data=dict(train_pattern="/d/train*", num_classes=3862))
  assert (real.data.train_pattern, real.data.num_classes) == ("/d/train*", 3862)


def test_the_student_blocks_follow_k_once_resolved():
  resolved = run_config.resolve(_config(distill_cell("hrnn", 0, "serial", "rep", 10), PRESETS["tiny"]))
  assert resolved.student.hrnn.num_blocks == 2 and resolved.teacher.hrnn.num_blocks == 4


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_every_preset_builds_a_config_for_every_cell_of_its_full_grid(name):
  preset = PRESETS[name]
  for cell in grid_lib.build_cells(preset.make_grid(seeds=(0,), rows=grid_lib.ALL_ROWS)):
    c = _config(cell, preset)
    assert c.seed == 0 and c.data.train_fraction == cell.fraction
    assert c.mode == cell.mode and (c.mode == "teacher" or c.student.name == cell.student)
    if c.mode in ("parallel", "serial"):
      assert sum(_losses(c)) > 0
  if name == "paper":  # the paper's sizes are untouched, and the H-RNN runs use the H-RNN batch size
    c = _config(teacher_cell("hrnn", 0), preset)
    assert (c.teacher.hrnn.cells, c.data.max_frames, c.data.batch_size) == (1024, 300, 256)
    assert c.train.num_steps == 0 and c.train.num_epochs == 5.0


def test_schedule_scale_lengthens_every_run():
  preset = PRESETS["small"]
  longer = dataclasses.replace(preset, schedule_scale=3.0)
  for cell, steps in ((teacher_cell("hrnn", 0), preset.teacher_steps),
                      (distill_cell("hrnn", 0, "serial", "pred_ce", 10), 300),
                      (finetune_cell(distill_cell("hrnn", 0, "serial", "rep", 10)), preset.finetune_steps)):
    assert _config(cell, preset).train.num_steps == steps
    assert _config(cell, longer).train.num_steps == 3 * steps
  paper = dataclasses.replace(PRESETS["paper"], schedule_scale=2.0)  # counts epochs, not steps
  c = _config(teacher_cell("hrnn", 0), paper)
  assert (c.train.num_steps, c.train.num_epochs) == (0, 10.0)
  with pytest.raises(UserError, match="schedule_scale must be > 0"):
    dataclasses.replace(preset, schedule_scale=0.0)


def test_get_config_builds_the_sweeps_config_of_one_cell():
  by_hand = paper_configs.get_config("preset=small,family=hrnn,mode=serial,loss=rep_pred_ce,k=10,seed=1")
  swept = paper_configs.cell_config(distill_cell("hrnn", 1, "serial", "rep_pred_ce", 10), PRESETS["small"],
                                    workdir_of=lambda key: "")
  assert by_hand.to_dict() == swept.to_dict() and by_hand.teacher_workdir == ""
  teacher = paper_configs.get_config("preset=tiny,family=nextvlad,mode=teacher")
  assert teacher.to_dict() == _config(teacher_cell("nextvlad", 0), PRESETS["tiny"]).to_dict()
  ft = paper_configs.get_config("preset=small,mode=serial,loss=rep,k=6,finetune,schedule_scale=2")
  assert (ft.mode, ft.init_workdir, ft.train.num_steps) == ("finetune", "", 2 * PRESETS["small"].finetune_steps)
  ens = paper_configs.get_config("family=nextvlad+hrnn,student=hrnn,mode=serial,k=10")
  assert ens.teacher_workdirs == "" and ens.student.name == "hrnn" and not ens.share_classifier
  with pytest.raises(ValueError, match="preset='huge'"):
    paper_configs.get_config("preset=huge")
  with pytest.raises(ValueError, match="unknown config argument"):
    paper_configs.get_config("teacher=hrnn")


@pytest.mark.parametrize("method", grid_lib.SELECTOR_BASELINES)
def test_a_content_aware_selector_is_a_baseline_row_when_asked_for(method):
  """Not in the default grid (the paper's six baselines); asked for, a selector is a k-frame baseline
  whose config validates and selects with it, under its own key."""
  assert method not in PRESETS["small"].make_grid().baselines
  grid = PRESETS["tiny"].make_grid(ks=(10,), sections=("table1",), rows=(), baselines=("uniform", method))
  cells = [c for c in grid_lib.build_cells(grid) if c.mode == "student_only"]
  assert [c.key for c in cells] == ["hrnn/seed0/uniform_k10", f"hrnn/seed0/{method}_k10"]
  resolved = run_config.resolve(_config(cells[1], PRESETS["tiny"]))
  run_config.validate(resolved)
  assert resolved.mode == "student_only" and (resolved.student.sampling, resolved.student.k) == (method, 10)
