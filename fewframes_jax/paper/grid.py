"""The paper's experiment grid: which runs its tables need. No JAX here.

A `Cell` is one training run: a Teacher-Skyline, a k-frame baseline (no teacher), a distilled student
(parallel or serial, one loss combination), or a stage-2 fine-tune. `build_cells(grid)` lists the
cells of the chosen sections in dependency order (teachers before the serial students that read them,
stage 1 before its fine-tune); every cell is listed once, so a teacher serves every row that needs it.
Each cell has a `key` ("hrnn/seed0/serial_rep_pred_ce_k10") that names its workdir and its cached
result; the renderers (`render.py`) look results up by the same keys, built by the same constructors.

Sections (the paper's tables, PAPER.md §7):
  table1  Teacher-Skyline; the baselines Uniform/Random/First/Middle/Last/First-Middle-Last at each k
          (and, when asked for, the content-aware selectors `SELECTOR_BASELINES`);
          Parallel and Serial x loss combinations at each k. One family per `Grid.families` entry.
  table2  Serial vs Uniform at `anchor_k` with a fraction of the training data (the teacher is trained
          on the same fraction).
  table3  FLOPs per video and measured eval time of the teacher and the Serial students at `table3_ks`.
  table4  final (L_rep) vs intermediate (L_rep^I) representation matching at `anchor_k` (recurrent
          families only).
  cross   cross-family distillation (a `cross_teacher` teacher, `cross_students` students) and a
          multi-teacher ensemble, at `anchor_k`, with the same-family and no-teacher rows to compare.
"""
import dataclasses
from typing import Dict, List, Optional, Sequence, Tuple

from fewframes_jax.errors import UserError

PAPER_KS = (6, 10, 15, 20, 30)  # the paper's study of k [PDF §2]
BASELINES = ("uniform", "random", "first", "middle", "last", "first_middle_last")  # the paper's
# Beyond the paper: training-free, content-aware selectors (`sampling/content.py`), as k-frame baselines
# of the same table when asked for (`Grid.baselines`; not in the default grid).
SELECTOR_BASELINES = ("feature_change", "far_from_mean")
BASELINE_NAMES = {"uniform": "Uniform-k", "random": "Random-k", "first": "First-k", "middle": "Middle-k",
                  "last": "Last-k", "first_middle_last": "First-Middle-Last-k",
                  "feature_change": "Feature-change-k", "far_from_mean": "Far-from-mean-k"}
SECTIONS = ("table1", "table2", "table3", "table4", "cross")
DISTILL_MODES = ("parallel", "serial")
CELL_MODES = ("teacher", "student_only") + DISTILL_MODES  # a fine-tune is made from a distilled cell


@dataclasses.dataclass(frozen=True)
class Loss:
  """A student loss combination: which terms are on (each then takes the family's weight)."""
  name: str
  ce: bool
  rep: bool
  pred: bool


LOSSES = {
    "rep": Loss("L_rep", ce=False, rep=True, pred=False),
    "rep_ce": Loss("L_rep, L_CE", ce=True, rep=True, pred=False),
    "rep_pred_ce": Loss("L_rep, L_pred, L_CE", ce=True, rep=True, pred=True),
    "pred": Loss("L_pred", ce=False, rep=False, pred=True),
    "pred_ce": Loss("L_pred, L_CE", ce=True, rep=False, pred=True),
}
# The paper's Table 1 rows, in its order (it ran Parallel with the three L_rep combinations only).
TABLE1_ROWS = (("parallel", "rep"), ("parallel", "rep_ce"), ("parallel", "rep_pred_ce"),
               ("serial", "rep"), ("serial", "pred"), ("serial", "rep_ce"), ("serial", "pred_ce"),
               ("serial", "rep_pred_ce"))
ALL_ROWS = tuple((mode, loss) for mode in DISTILL_MODES for loss in LOSSES)
NAMED_ROWS = {"paper": TABLE1_ROWS, "all": ALL_ROWS}
TABLE4_ROWS = tuple((mode, loss) for mode in DISTILL_MODES for loss in ("rep", "rep_ce", "rep_pred_ce"))
BEST_ROW = ("serial", "rep_pred_ce")  # the paper's best, used for Tables 2, 3 and the cross-family rows


def needs_finetune(loss: str) -> bool:
  """L_rep alone trains no classifier: the paper's stage 2 fine-tunes student + classifier on L_CE."""
  return not LOSSES[loss].ce and not LOSSES[loss].pred


def parse_rows(text: str) -> Tuple[Tuple[str, str], ...]:
  """Teacher-student rows from 'paper' (the paper's 8), 'all' (10) or 'serial:pred_ce,parallel:rep_ce,...'.
  Raises `UserError` for anything else (an unknown mode or loss is caught by `Grid`)."""
  if text in NAMED_ROWS:
    return NAMED_ROWS[text]
  rows = tuple(tuple(item.split(":", 1)) for item in text.split(",") if item)
  if not rows or any(len(r) != 2 for r in rows):
    raise UserError(f"rows {text!r}: expected 'paper', 'all' or mode:loss,... (mode one of {DISTILL_MODES}, "
                    f"loss one of {tuple(LOSSES)})")
  return rows


@dataclasses.dataclass(frozen=True)
class Cell:
  """One training run.

  family: the teacher's family ('+'-joined for an ensemble); for a baseline, the student's family.
  mode: teacher | student_only | parallel | serial | finetune (`specs.MODES`).
  teachers: keys of the frozen teacher cells (serial: one; an ensemble: several).
  init: the stage-1 cell a fine-tune starts from.
  """
  family: str
  seed: int
  mode: str
  k: int = 0
  sampling: str = "uniform"
  loss: str = ""
  intermediate: bool = False
  fraction: float = 1.0
  student_family: str = ""
  teachers: Tuple[str, ...] = ()
  init: str = ""

  @property
  def student(self) -> str:
    return self.student_family or self.family

  @property
  def key(self) -> str:
    suffix = "" if self.fraction == 1.0 else f"_f{self.fraction:g}"
    if self.mode == "teacher":
      name = "teacher"
    elif self.mode == "student_only":
      name = f"{self.sampling}_k{self.k}"
    elif self.mode == "finetune":
      return self.init + "_ft"
    else:
      name = f"{self.mode}_{self.loss}{'_inter' if self.intermediate else ''}_k{self.k}"
      if self.student_family and self.student_family != self.family:
        name += f"_to_{self.student_family}"
    return f"{self.family}/seed{self.seed}/{name}{suffix}"

  @property
  def deps(self) -> Tuple[str, ...]:
    return self.teachers + ((self.init,) if self.init else ())


# ------------------------------------------------------------------------------------------------
# Cell constructors: the renderers call the same ones, so a table reads exactly what was run.


def _check_loss(loss: str) -> None:
  if loss not in LOSSES:
    raise UserError(f"loss {loss!r} is unknown; expected one of {sorted(LOSSES)}")


def teacher_cell(family: str, seed: int, fraction: float = 1.0) -> Cell:
  return Cell(family, seed, "teacher", fraction=fraction)


def baseline_cell(family: str, seed: int, k: int, sampling: str, fraction: float = 1.0) -> Cell:
  return Cell(family, seed, "student_only", k=k, sampling=sampling, fraction=fraction)


def distill_cell(family: str, seed: int, mode: str, loss: str, k: int, *, fraction: float = 1.0,
                 intermediate: bool = False, student_family: str = "") -> Cell:
  """A parallel or serial student (serial reads the family's teacher trained on the same fraction)."""
  if mode not in DISTILL_MODES:
    raise UserError(f"distill_cell: mode must be one of {DISTILL_MODES}, got {mode!r}")
  _check_loss(loss)
  teachers = (teacher_cell(family, seed, fraction).key,) if mode == "serial" else ()
  return Cell(family, seed, mode, k=k, loss=loss, intermediate=intermediate, fraction=fraction,
              student_family=student_family if student_family != family else "", teachers=teachers)


def ensemble_cell(families: Sequence[str], student_family: str, seed: int, loss: str, k: int) -> Cell:
  """A serial student of an ensemble of teachers (one teacher cell per family)."""
  _check_loss(loss)
  return Cell("+".join(families), seed, "serial", k=k, loss=loss, student_family=student_family,
              teachers=tuple(teacher_cell(f, seed).key for f in families))


def finetune_cell(stage1: Cell) -> Cell:
  return dataclasses.replace(stage1, mode="finetune", init=stage1.key)


def reported_cell(mode: str, loss: str, family: str, seed: int, k: int, **kw) -> Cell:
  """The cell whose result a table reports for a distillation row: after stage 2 for L_rep alone."""
  cell = distill_cell(family, seed, mode, loss, k, **kw)
  return finetune_cell(cell) if needs_finetune(loss) else cell


def make_cell(family: str, mode: str, *, seed: int = 0, k: int = 0, sampling: str = "uniform", loss: str = "",
              student_family: str = "", fraction: float = 1.0, intermediate: bool = False,
              finetune: bool = False) -> Cell:
  """Any one cell from plain options (`configs/paper.py:get_config`'s argument): mode teacher,
  student_only (a baseline with `sampling`), parallel or serial (`loss`; a '+'-joined `family` is an
  ensemble of teachers); `finetune`: the stage-2 fine-tune of that distilled cell."""
  if mode not in CELL_MODES:
    raise UserError(f"mode={mode!r}: expected one of {CELL_MODES} (add finetune for a stage-2 fine-tune)")
  if finetune and mode not in DISTILL_MODES:
    raise UserError(f"finetune: a stage-2 fine-tune follows a parallel or serial cell, not mode={mode!r}")
  if mode == "teacher":
    return teacher_cell(family, seed, fraction)
  if mode == "student_only":
    return baseline_cell(family, seed, k, sampling, fraction)
  if "+" in family:
    if mode != "serial" or fraction != 1.0 or intermediate or not student_family:
      raise UserError(f"family={family!r}: an ensemble of teachers is a serial cell on all the data, with "
                      "a student family (student=...)")
    cell = ensemble_cell(family.split("+"), student_family, seed, loss, k)
  else:
    cell = distill_cell(family, seed, mode, loss, k, fraction=fraction, intermediate=intermediate,
                        student_family=student_family)
  return finetune_cell(cell) if finetune else cell


# ------------------------------------------------------------------------------------------------
# The grid


@dataclasses.dataclass(frozen=True)
class Grid:
  """What to run. `families` each get a Table 1; Tables 2 and 4 use the first (Table 4: first recurrent).
  An unknown section, baseline or row is a `UserError`."""
  families: Tuple[str, ...] = ("hrnn",)
  seeds: Tuple[int, ...] = (0,)
  ks: Tuple[int, ...] = PAPER_KS
  baselines: Tuple[str, ...] = BASELINES
  rows: Tuple[Tuple[str, str], ...] = TABLE1_ROWS
  sections: Tuple[str, ...] = SECTIONS
  anchor_k: int = 30                       # k of Tables 2 and 4 and of the cross-family rows
  fractions: Tuple[float, ...] = (0.1, 0.25, 0.5)
  table3_ks: Tuple[int, ...] = (10, 20, 30)
  table4_rows: Tuple[Tuple[str, str], ...] = TABLE4_ROWS
  cross_teacher: str = "nextvlad"
  cross_students: Tuple[str, ...] = ("hrnn", "lstm")
  ensemble: Tuple[str, ...] = ("nextvlad", "hrnn")  # teachers of the ensemble row; () for none

  def __post_init__(self):
    for section in self.sections:
      if section not in SECTIONS:
        raise UserError(f"unknown section {section!r}; expected some of {SECTIONS}")
    for method in self.baselines:
      if method not in BASELINES + SELECTOR_BASELINES:
        raise UserError(f"unknown baseline {method!r}; expected some of {BASELINES + SELECTOR_BASELINES}")
    for mode, loss in tuple(self.rows) + tuple(self.table4_rows):
      if mode not in DISTILL_MODES or loss not in LOSSES:
        raise UserError(f"unknown row ({mode!r}, {loss!r}): mode parallel|serial, loss one of {sorted(LOSSES)}")
    if not self.families or not self.seeds:
      raise UserError("the grid needs at least one family and one seed")

  @property
  def table4_family(self) -> Optional[str]:
    # The families with per-step states (L_rep^I) are the models' to name; imported here so that the
    # grid and the renderers load without JAX.
    from fewframes_jax.models import RECURRENT  # pylint: disable=g-import-not-at-top
    return next((f for f in self.families if f in RECURRENT), None)

  @property
  def ensemble_student(self) -> str:
    return self.cross_students[0] if self.cross_students else self.families[0]


def _with_finetune(cells: List[Cell], cell: Cell) -> None:
  cells.append(cell)
  if cell.mode in DISTILL_MODES and needs_finetune(cell.loss):
    cells.append(finetune_cell(cell))


def _section_cells(grid: Grid, seed: int) -> List[Cell]:
  """The cells of one seed, section by section (with repeats: a teacher serves several sections)."""
  cells: List[Cell] = []
  main, k = grid.families[0], grid.anchor_k
  if "table1" in grid.sections or "table3" in grid.sections:
    cells += [teacher_cell(family, seed) for family in grid.families]
  if "table1" in grid.sections:
    for family in grid.families:
      for kk in grid.ks:
        cells += [baseline_cell(family, seed, kk, method) for method in grid.baselines]
        for mode, loss in grid.rows:
          _with_finetune(cells, distill_cell(family, seed, mode, loss, kk))
  if "table3" in grid.sections:
    for family in grid.families:
      for kk in grid.table3_ks:
        _with_finetune(cells, distill_cell(family, seed, *BEST_ROW, kk))
  if "table2" in grid.sections:
    for fraction in tuple(grid.fractions) + (1.0,):
      cells += [teacher_cell(main, seed, fraction), baseline_cell(main, seed, k, "uniform", fraction)]
      _with_finetune(cells, distill_cell(main, seed, *BEST_ROW, k, fraction=fraction))
  if "table4" in grid.sections and grid.table4_family:
    family = grid.table4_family
    cells.append(teacher_cell(family, seed))
    for mode, loss in grid.table4_rows:
      for intermediate in (False, True):
        _with_finetune(cells, distill_cell(family, seed, mode, loss, k, intermediate=intermediate))
  if "cross" in grid.sections:
    t = grid.cross_teacher
    cells += [teacher_cell(t, seed), baseline_cell(t, seed, k, "uniform")]
    _with_finetune(cells, distill_cell(t, seed, *BEST_ROW, k))
    for s in grid.cross_students:
      cells += [teacher_cell(s, seed), baseline_cell(s, seed, k, "uniform")]
      _with_finetune(cells, distill_cell(s, seed, *BEST_ROW, k))
      _with_finetune(cells, distill_cell(t, seed, *BEST_ROW, k, student_family=s))
    if grid.ensemble:
      cells += [teacher_cell(f, seed) for f in grid.ensemble]
      _with_finetune(cells, ensemble_cell(grid.ensemble, grid.ensemble_student, seed, BEST_ROW[1], k))
  return cells


def build_cells(grid: Grid) -> List[Cell]:
  """Every cell of the grid's sections, each once, dependencies first (teachers, then the rest)."""
  unique: Dict[str, Cell] = {}
  for seed in grid.seeds:
    for cell in _section_cells(grid, seed):
      unique.setdefault(cell.key, cell)
  ordered = sorted(unique.values(), key=lambda c: c.mode != "teacher")  # stable: teachers first
  done = set()
  for cell in ordered:
    missing = [d for d in cell.deps if d not in done]
    if missing:
      raise AssertionError(f"cell {cell.key} is listed before its dependencies {missing}")
    done.add(cell.key)
  return ordered
