"""The experiment grid: each cell once, after its dependencies; names checked; any cell from options."""
import pytest

from fewframes_jax.errors import UserError
from fewframes_jax.paper import grid as grid_lib


def test_full_grid_lists_each_cell_once_after_its_dependencies():
  grid = grid_lib.Grid(seeds=(0, 1))
  cells = grid_lib.build_cells(grid)
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
            and not c.intermediate and not c.student_family and c.k in grid_lib.PAPER_KS]
  assert sum(c.mode == "student_only" for c in table1) == 6 * 5
  assert sum(c.mode == "finetune" for c in table1) == 2 * 5
  # Table 4 on the first recurrent family: each L_rep row with final and intermediate matching.
  inter = [c for c in cells if c.intermediate and c.seed == 0 and c.mode != "finetune"]
  assert {(c.family, c.mode, c.loss, c.k) for c in inter} == {("hrnn", m, l, 30) for m, l in grid_lib.TABLE4_ROWS}
  # Ensemble: a serial cell reading two teachers of different families.
  ensemble = [c for c in cells if len(c.teachers) == 2]
  assert len(ensemble) == 2 and set(ensemble[0].teachers) == {"nextvlad/seed0/teacher", "hrnn/seed0/teacher"}


def test_sections_select_their_cells():
  only3 = grid_lib.build_cells(grid_lib.Grid(sections=("table3",), table3_ks=(10,)))
  assert [c.key for c in only3] == ["hrnn/seed0/teacher", "hrnn/seed0/serial_rep_pred_ce_k10"]
  no_table4 = grid_lib.Grid(families=("nextvlad",), sections=("table4",))
  assert no_table4.table4_family is None and grid_lib.build_cells(no_table4) == []


def test_grid_rejects_unknown_names_as_user_errors():
  with pytest.raises(UserError, match="unknown section"):
    grid_lib.Grid(sections=("table9",))
  with pytest.raises(UserError, match="unknown baseline"):
    grid_lib.Grid(baselines=("every_other",))
  with pytest.raises(UserError, match="unknown row"):
    grid_lib.Grid(rows=(("serial", "rep_kd"),))
  with pytest.raises(UserError, match="at least one family"):
    grid_lib.Grid(seeds=())


def test_rows_from_text():
  assert grid_lib.parse_rows("serial:pred_ce,parallel:rep_ce") == (("serial", "pred_ce"), ("parallel", "rep_ce"))
  assert grid_lib.parse_rows("all") == grid_lib.ALL_ROWS and len(grid_lib.ALL_ROWS) == 10
  assert grid_lib.parse_rows("paper") == grid_lib.TABLE1_ROWS
  for bad in ("serial", "", "serial:rep,x"):
    with pytest.raises(UserError, match="expected 'paper', 'all' or mode:loss"):
      grid_lib.parse_rows(bad)


def test_make_cell_builds_the_grid_constructors_cells():
  assert grid_lib.make_cell("hrnn", "teacher", seed=1, fraction=0.5) == grid_lib.teacher_cell("hrnn", 1, 0.5)
  assert grid_lib.make_cell("hrnn", "student_only", k=6, sampling="last") == grid_lib.baseline_cell("hrnn", 0, 6, "last")
  serial = grid_lib.make_cell("hrnn", "serial", k=10, loss="rep", intermediate=True)
  assert serial.key == "hrnn/seed0/serial_rep_inter_k10" and serial.teachers == ("hrnn/seed0/teacher",)
  ft = grid_lib.make_cell("hrnn", "parallel", k=10, loss="rep", finetune=True)
  assert (ft.mode, ft.init, ft.key) == ("finetune", "hrnn/seed0/parallel_rep_k10", "hrnn/seed0/parallel_rep_k10_ft")
  ens = grid_lib.make_cell("nextvlad+hrnn", "serial", k=10, loss="rep_pred_ce", student_family="hrnn")
  assert ens == grid_lib.ensemble_cell(("nextvlad", "hrnn"), "hrnn", 0, "rep_pred_ce", 10)
  cross = grid_lib.make_cell("nextvlad", "serial", k=10, loss="rep_pred_ce", student_family="lstm")
  assert cross.key == "nextvlad/seed0/serial_rep_pred_ce_k10_to_lstm" and cross.student == "lstm"
  for kwargs, message in ((dict(mode="finetune"), "mode='finetune'"), (dict(mode="teacher", finetune=True), "stage-2"),
                          (dict(mode="serial", loss="kd"), "loss 'kd' is unknown"),
                          (dict(family="nextvlad+hrnn", mode="serial", loss="rep"), "student=")):
    kwargs = dict(dict(family="hrnn", k=10), **kwargs)
    with pytest.raises(UserError, match=message):
      grid_lib.make_cell(kwargs.pop("family"), kwargs.pop("mode"), **kwargs)
