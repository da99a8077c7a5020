"""The paper's tables in markdown, and the plain series its figures draw. No JAX here.

Results: `results[key]` (key: a `grid.Cell.key`) is a dict with at least `gap`, `map_all_classes` (the
paper's mAP convention, shown as mAP†), `map` (classes with a positive), `flops` and `params` of the
evaluated network. With several seeds a table cell shows mean±standard deviation over the seeds that
have a result; a missing cell shows '–'. Every renderer finds its cells with the grid's constructors,
so a table reads exactly what the sweep ran.

  render_markdown     the whole report: each section's table, in the paper's layout.
  table1_markdown ... one table each (Tables 1-4, the orderings, the cross-family rows).
  ordering_checks     the paper's Table 1 claims, counted per seed.
  pareto_points, gap_vs_k_series   what `plots.py` draws.
  parse_markdown_table             reads a rendered table back (tests, RESULTS.md checks).
"""
import math
from typing import Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

from fewframes_jax.paper.grid import (BASELINE_NAMES, BEST_ROW, LOSSES, Cell, Grid, baseline_cell, distill_cell,
                                      ensemble_cell, finetune_cell, needs_finetune, reported_cell, teacher_cell)


# ------------------------------------------------------------------------------------------------
# Aggregation and formatting


def seed_values(results: Mapping[str, Mapping], keys: Iterable[str], metric: str) -> List[float]:
  """The metric of each key that has a result (one key per seed)."""
  return [float(results[k][metric]) for k in keys if k in results and metric in results[k]]


def mean_std(values: Sequence[float]) -> Tuple[float, float]:
  """Mean and sample standard deviation (0 for one value). NaN mean when empty."""
  if not values:
    return float("nan"), float("nan")
  m = sum(values) / len(values)
  if len(values) == 1:
    return m, 0.0
  return m, math.sqrt(sum((v - m) ** 2 for v in values) / (len(values) - 1))


def fmt(values: Sequence[float], digits: int = 3, bold: bool = False) -> str:
  """'0.812' for one seed, '0.812±0.004' for several, '–' for none."""
  if not values:
    return "–"
  m, s = mean_std(values)
  text = f"{m:.{digits}f}" if len(values) == 1 else f"{m:.{digits}f}±{s:.{digits}f}"
  return f"**{text}**" if bold else text


def _row(cells: Sequence[str]) -> str:
  return "| " + " | ".join(cells) + " |"


def _header(columns: Sequence[str]) -> List[str]:
  return [_row(columns), "|" + "|".join([":---"] + ["---:"] * (len(columns) - 1)) + "|"]


MAP_NOTE = ("mAP† = mean over all classes of the per-class AP (a class without positives counts 0): the "
            "2017 code's convention, which the paper's figures use (`map_all_classes`).")


def _mean(values: Sequence[float]) -> float:
  return mean_std(values)[0] if values else float("-inf")


def row_label(mode: str, loss: str) -> str:
  """'Serial, L_rep, L_pred, L_CE': a teacher-student row's name in the tables and the GAP-vs-k plot."""
  return f"{mode.capitalize()}, {LOSSES[loss].name}"


def table1_markdown(results: Mapping[str, Mapping], grid: Grid, family: str) -> str:
  """The paper's Table 1 layout for `family`: GAP and mAP† per k; the best student cell in bold."""
  seeds, ks = grid.seeds, grid.ks
  columns = ["Model"] + [f"k={k} {m}" for k in ks for m in ("GAP", "mAP†")]
  lines = _header(columns)
  teacher = [teacher_cell(family, s).key for s in seeds]
  t_gap, t_map = seed_values(results, teacher, "gap"), seed_values(results, teacher, "map_all_classes")
  lines.append(_row(["Teacher-Skyline (all frames)"] + ["", ""] * (len(ks) - 1) + [fmt(t_gap), fmt(t_map)]))
  rows: List[Tuple[str, Dict[int, List[str]]]] = []  # (label, k -> seed keys)
  section_at = {0: "*Baselines (k frames, no teacher)*"}
  for method in grid.baselines:
    rows.append((BASELINE_NAMES[method], {k: [baseline_cell(family, s, k, method).key for s in seeds] for k in ks}))
  section_at[len(rows)] = "*Teacher-Student*"
  for mode, loss in grid.rows:
    label = row_label(mode, loss) + (" (+ stage-2 CE fine-tune)" if needs_finetune(loss) else "")
    rows.append((label, {k: [reported_cell(mode, loss, family, s, k).key for s in seeds] for k in ks}))
  best = {}
  for k in ks:
    for metric in ("gap", "map_all_classes"):
      best[k, metric] = max((_mean(seed_values(results, keys[k], metric)) for _, keys in rows), default=None)
  for i, (label, keys) in enumerate(rows):
    if i in section_at:
      lines.append(_row([section_at[i]] + [""] * (len(columns) - 1)))
    cells = [label]
    for k in ks:
      for metric in ("gap", "map_all_classes"):
        values = seed_values(results, keys[k], metric)
        cells.append(fmt(values, bold=bool(values) and _mean(values) == best[k, metric]))
    lines.append(_row(cells))
  stage1 = [(mode, loss) for mode, loss in grid.rows if needs_finetune(loss)]
  for mode, loss in stage1:  # the L_rep rows before stage 2, for reference
    cells = [f"*{row_label(mode, loss)}, stage 1 only*"]
    for k in ks:
      keys = [distill_cell(family, s, mode, loss, k).key for s in seeds]
      cells += [fmt(seed_values(results, keys, "gap")), fmt(seed_values(results, keys, "map_all_classes"))]
    lines.append(_row(cells))
  notes = [f"Table 1 layout, {family}; seeds {', '.join(map(str, seeds))}"
           + (" (mean±sd over seeds)" if len(seeds) > 1 else "") + ". Bold: best baseline/student per column.",
           MAP_NOTE]
  return "\n".join(lines + [""] + notes)


def table2_markdown(results: Mapping[str, Mapping], grid: Grid, fraction_labels: Optional[Mapping[float, str]] = None) -> str:
  """The paper's Table 2 layout: Serial vs Uniform at anchor_k with a fraction of the training data."""
  family, k, seeds = grid.families[0], grid.anchor_k, grid.seeds
  fractions = tuple(grid.fractions) + (1.0,)
  labels = fraction_labels or {}
  columns = ["Model", "Metric"] + [labels.get(f, f"{f:.0%}") for f in fractions]
  lines = _header(columns)
  rows = [(row_label(*BEST_ROW), lambda s, f: reported_cell(*BEST_ROW, family, s, k, fraction=f)),
          ("Uniform-k", lambda s, f: baseline_cell(family, s, k, "uniform", f)),
          ("Teacher-Skyline", lambda s, f: teacher_cell(family, s, f))]
  for label, make in rows:
    for metric, name in (("gap", "GAP"), ("map_all_classes", "mAP†")):
      cells = [label, name]
      for f in fractions:
        cells.append(fmt(seed_values(results, [make(s, f).key for s in seeds], metric)))
      lines.append(_row(cells))
  notes = [f"Table 2 layout, {family}, k={k}; the teacher is trained on the same fraction of the data; the "
           "100% column repeats Table 1. " + MAP_NOTE]
  return "\n".join(lines + [""] + notes)


def table3_markdown(timings: Mapping[str, Mapping], grid: Grid, family: str) -> str:
  """The paper's Table 3 layout: measured eval time and FLOPs per video, teacher vs students.

  `timings[key]` (key: the teacher cell's or a student cell's) holds `seconds` (eval forward time),
  `videos`, `flops`, `params`, `frames`.
  """
  seeds = grid.seeds
  columns = ["Model", "frames", "eval time (s)", "time vs teacher", "FLOPs/video (M)", "FLOPs vs teacher", "params"]
  lines = _header(columns)
  teacher_keys = [teacher_cell(family, s).key for s in seeds]
  rows = [("Teacher-Skyline", teacher_keys)]
  for k in grid.table3_ks:
    rows.append((f"k = {k} ({row_label(*BEST_ROW)})",
                 [reported_cell(*BEST_ROW, family, s, k).key for s in seeds]))
  t_time = _mean(seed_values(timings, teacher_keys, "seconds"))
  t_flops = _mean(seed_values(timings, teacher_keys, "flops"))
  videos = next((int(timings[k]["videos"]) for k in teacher_keys if k in timings), 0)
  for label, keys in rows:
    seconds, flops = seed_values(timings, keys, "seconds"), seed_values(timings, keys, "flops")
    frames = next((str(timings[k]["frames"]) for k in keys if k in timings), "–")
    params = next((f"{int(timings[k]['params']):,}" for k in keys if k in timings), "–")
    time_ratio = f"{_mean(seconds) / t_time - 1:+.1%}" if seconds and t_time > 0 else "–"
    flops_ratio = f"{_mean(flops) / t_flops - 1:+.1%}" if flops and t_flops > 0 else "–"
    lines.append(_row([label, frames, fmt(seconds, 2), time_ratio,
                       fmt([f / 1e6 for f in flops], 2), flops_ratio, params]))
  notes = [f"Table 3 layout, {family}. Eval time: the jitted forward pass (dequantize, frame selection, "
           f"model) over {videos} eval videos held in memory, median of repeated timed passes after a "
           "warm-up (compile and input reading excluded). FLOPs: XLA cost analysis of the eval forward pass "
           "per video, scans counted in full (`metrics.flops.model_cost`)."]
  return "\n".join(lines + [""] + notes)


def table4_markdown(results: Mapping[str, Mapping], grid: Grid) -> str:
  """The paper's Table 4 layout: intermediate (L_rep^I) vs final (L_rep) representation matching."""
  family, k, seeds = grid.table4_family, grid.anchor_k, grid.seeds
  if family is None:
    return "Table 4 needs a recurrent family (hrnn, lstm or gru) in the grid."
  columns = ["Model", "Intermediate GAP", "Intermediate mAP†", "Final GAP", "Final mAP†"]
  lines = _header(columns)
  for mode, loss in grid.table4_rows:
    cells = [f"{mode.capitalize()} {LOSSES[loss].name}"]
    for intermediate in (True, False):
      keys = [reported_cell(mode, loss, family, s, k, intermediate=intermediate).key for s in seeds]
      cells += [fmt(seed_values(results, keys, "gap")), fmt(seed_values(results, keys, "map_all_classes"))]
    lines.append(_row(cells))
  notes = [f"Table 4 layout, {family}, k={k}. Intermediate: L_rep is replaced by L_rep^I (the lower RNN's "
           "per-frame outputs, teacher at the student's frames, eq. 3); Final: L_rep on the video "
           "representation (eq. 2). L_rep-only rows are reported after the stage-2 CE fine-tune. " + MAP_NOTE]
  return "\n".join(lines + [""] + notes)


def ordering_checks(results: Mapping[str, Mapping], grid: Grid, family: str, metric: str = "gap"
                    ) -> List[Tuple[str, Dict[int, Tuple[int, int]]]]:
  """The paper's Table 1 claims, checked per seed: [(claim, {k: (seeds where it holds, seeds with data)})].

  A claim compares single-seed values (strict '>'); a seed without every value it needs is skipped.
  """
  def value(cell: Cell) -> Optional[float]:
    r = results.get(cell.key)
    return float(r[metric]) if r and metric in r else None

  def students(s, k):
    return [value(reported_cell(m, l, family, s, k)) for m, l in grid.rows]

  def base(s, k, method):
    return value(baseline_cell(family, s, k, method))

  best = row_label(*BEST_ROW)
  claims = [
      ("Teacher-Skyline > every teacher-student row", lambda s, k: [value(teacher_cell(family, s))] + students(s, k),
       lambda v: all(v[0] > x for x in v[1:])),
      (f"{best} > Uniform-k", lambda s, k: [value(reported_cell(*BEST_ROW, family, s, k)), base(s, k, "uniform")],
       lambda v: v[0] > v[1]),
      ("every teacher-student row > Uniform-k", lambda s, k: [base(s, k, "uniform")] + students(s, k),
       lambda v: all(x > v[0] for x in v[1:])),
      ("best teacher-student row > Uniform-k", lambda s, k: [base(s, k, "uniform")] + students(s, k),
       lambda v: max(v[1:]) > v[0]),
      ("Uniform-k > Random-k", lambda s, k: [base(s, k, "uniform"), base(s, k, "random")], lambda v: v[0] > v[1]),
      ("Uniform-k > every other baseline",
       lambda s, k: [base(s, k, "uniform")] + [base(s, k, m) for m in grid.baselines if m != "uniform"],
       lambda v: all(v[0] > x for x in v[1:])),
      ("Random-k > First-k and Last-k", lambda s, k: [base(s, k, "random"), base(s, k, "first"), base(s, k, "last")],
       lambda v: v[0] > v[1] and v[0] > v[2]),
  ]
  out = []
  for claim, gather, holds in claims:
    counts = {}
    for k in grid.ks:
      usable = [v for v in (gather(s, k) for s in grid.seeds) if len(v) > 1 and None not in v]
      counts[k] = (sum(bool(holds(v)) for v in usable), len(usable))
    out.append((claim, counts))
  return out


def orderings_markdown(results: Mapping[str, Mapping], grid: Grid, family: str) -> str:
  """`ordering_checks` as a table: 'n/N' seeds where each claim holds, per k (GAP and mAP†)."""
  columns = ["Claim (paper, Table 1)"] + [f"k={k} {m}" for k in grid.ks for m in ("GAP", "mAP†")]
  lines = _header(columns)
  by_metric = {m: ordering_checks(results, grid, family, m) for m in ("gap", "map_all_classes")}
  for i, (claim, _) in enumerate(by_metric["gap"]):
    cells = [claim]
    for k in grid.ks:
      for m in ("gap", "map_all_classes"):
        n, total = by_metric[m][i][1][k]
        cells.append(f"{n}/{total}" if total else "–")
    lines.append(_row(cells))
  notes = [f"Orderings, {family}: the number of seeds in which each claim holds (strict >, per seed). "
           "Teacher-student rows are reported as in Table 1 (L_rep alone after its stage-2 fine-tune)."]
  return "\n".join(lines + [""] + notes)


def cross_rows(grid: Grid, seed: int) -> List[Tuple[str, str, Cell]]:
  """(teacher label, student label, cell) of the cross-family table, for one seed."""
  k, t = grid.anchor_k, grid.cross_teacher
  rows = [(f"{t} (all frames)", "–", teacher_cell(t, seed)),
          ("none", f"{t}, Uniform-k", baseline_cell(t, seed, k, "uniform")),
          (t, t, reported_cell(*BEST_ROW, t, seed, k))]
  for s in grid.cross_students:
    rows += [(f"{s} (all frames)", "–", teacher_cell(s, seed)),
             ("none", f"{s}, Uniform-k", baseline_cell(s, seed, k, "uniform")),
             (s, s, reported_cell(*BEST_ROW, s, seed, k)),
             (t, s, reported_cell(*BEST_ROW, t, seed, k, student_family=s))]
  if grid.ensemble:
    ens = ensemble_cell(grid.ensemble, grid.ensemble_student, seed, BEST_ROW[1], k)
    rows.append((" + ".join(grid.ensemble) + " (ensemble)", grid.ensemble_student,
                 finetune_cell(ens) if needs_finetune(BEST_ROW[1]) else ens))
  return rows


def cross_markdown(results: Mapping[str, Mapping], grid: Grid) -> str:
  """Cross-family and multi-teacher rows (the paper's future work), Serial L_rep+L_pred+L_CE."""
  columns = ["Teacher", "Student", "frames", "GAP", "mAP†", "FLOPs/video (M)"]
  lines = _header(columns)
  per_seed = [cross_rows(grid, s) for s in grid.seeds]
  for i, (teacher, student, cell) in enumerate(per_seed[0]):
    keys = [rows[i][2].key for rows in per_seed]
    frames = "all" if cell.mode == "teacher" else str(cell.k)
    flops = seed_values(results, keys[:1], "flops")
    lines.append(_row([teacher, student, frames, fmt(seed_values(results, keys, "gap")),
                       fmt(seed_values(results, keys, "map_all_classes")),
                       f"{flops[0] / 1e6:.2f}" if flops else "–"]))
  notes = [f"Cross-family rows, k={grid.anchor_k}: Serial with {LOSSES[BEST_ROW[1]].name}. A student of "
           "another family has its own classifier and a learned linear projection of its representation "
           "for L_rep; the ensemble averages its teachers' predictions for L_pred and has one projection "
           "per teacher for L_rep. " + MAP_NOTE]
  return "\n".join(lines + [""] + notes)


def render_markdown(results: Mapping[str, Mapping], timings: Mapping[str, Mapping], grid: Grid, *, title: str,
                    fraction_labels: Optional[Mapping[float, str]] = None) -> str:
  """All the grid's sections as one markdown document; `title` follows 'Paper tables: '."""
  parts = [f"# Paper tables: {title}, seeds {', '.join(map(str, grid.seeds))}", ""]
  if "table1" in grid.sections:
    for family in grid.families:
      parts += [f"## Table 1 ({family})", "", table1_markdown(results, grid, family), "",
                f"### Which of the paper's orderings hold ({family})", "",
                orderings_markdown(results, grid, family), ""]
  if "table2" in grid.sections:
    parts += ["## Table 2: limited training data", "", table2_markdown(results, grid, fraction_labels), ""]
  if "table3" in grid.sections:
    parts += ["## Table 3: FLOPs and eval time", "", table3_markdown(timings, grid, grid.families[0]), ""]
  if "table4" in grid.sections and grid.table4_family:
    parts += ["## Table 4: intermediate vs final representation matching", "", table4_markdown(results, grid), ""]
  if "cross" in grid.sections:
    parts += ["## Cross-family and multi-teacher distillation", "", cross_markdown(results, grid), ""]
  return "\n".join(parts)


# ------------------------------------------------------------------------------------------------
# What the figures draw


def pareto_points(results: Mapping[str, Mapping], grid: Grid) -> List[Dict]:
  """Points for the GAP-vs-FLOPs plot: {'family', 'kind' (teacher|student|baseline), 'k', 'flops', 'gap',
  'gap_std'}, averaged over seeds, for every teacher, Uniform-k baseline and Serial best student."""
  specs = []  # (family, kind, k, make(seed) -> Cell)
  for family in grid.families:
    specs.append((family, "teacher", 0, lambda s, f=family: teacher_cell(f, s)))
    for k in grid.ks:
      specs.append((family, "baseline", k, lambda s, f=family, k=k: baseline_cell(f, s, k, "uniform")))
      specs.append((family, "student", k, lambda s, f=family, k=k: reported_cell(*BEST_ROW, f, s, k)))
  if "cross" in grid.sections:
    k, t = grid.anchor_k, grid.cross_teacher
    for f in (t,) + tuple(grid.cross_students):
      specs.append((f, "teacher", 0, lambda s, f=f: teacher_cell(f, s)))
      specs.append((f, "baseline", k, lambda s, f=f, k=k: baseline_cell(f, s, k, "uniform")))
      specs.append((f, "student", k, lambda s, f=f, k=k: reported_cell(*BEST_ROW, f, s, k)))
      if f != t:
        specs.append((f"{t}->{f}", "student", k,
                      lambda s, f=f, k=k: reported_cell(*BEST_ROW, t, s, k, student_family=f)))
    if grid.ensemble:
      specs.append((f"{'+'.join(grid.ensemble)}->{grid.ensemble_student}", "student", k,
                    lambda s, k=k: ensemble_cell(grid.ensemble, grid.ensemble_student, s, BEST_ROW[1], k)))
  points, seen = [], set()
  for family, kind, k, make in specs:
    keys = [make(s).key for s in grid.seeds]
    if keys[0] in seen:
      continue
    seen.add(keys[0])
    gaps, flops = seed_values(results, keys, "gap"), seed_values(results, keys, "flops")
    if gaps and flops:
      m, sd = mean_std(gaps)
      points.append({"family": family, "kind": kind, "k": k, "flops": flops[0], "gap": m, "gap_std": sd})
  return points


def gap_vs_k_series(results: Mapping[str, Mapping], grid: Grid, family: str) -> Dict:
  """{'teacher': (mean, sd) or None, 'series': {label: [(k, mean, sd), ...]}} for the GAP-vs-k plot."""
  seeds = grid.seeds
  series: Dict[str, List[Tuple[int, float, float]]] = {}

  def add(label, make):
    for k in grid.ks:
      values = seed_values(results, [make(s, k).key for s in seeds], "gap")
      if values:
        series.setdefault(label, []).append((k, *mean_std(values)))

  for method in grid.baselines:
    add(BASELINE_NAMES[method], lambda s, k, m=method: baseline_cell(family, s, k, m))
  for mode, loss in grid.rows:
    add(row_label(mode, loss), lambda s, k, m=mode, l=loss: reported_cell(m, l, family, s, k))
  teacher = seed_values(results, [teacher_cell(family, s).key for s in seeds], "gap")
  return {"teacher": mean_std(teacher) if teacher else None, "series": series}


def parse_markdown_table(text: str) -> List[List[str]]:
  """The rows (split into stripped cells) of the first markdown table in `text`, without the rule line."""
  rows, started = [], False
  for line in text.splitlines():
    line = line.strip()
    if line.startswith("|") and line.endswith("|"):
      started = True
      cells = [c.strip() for c in line[1:-1].split("|")]
      if not all(set(c) <= set(":-") and c for c in cells):
        rows.append(cells)
    elif started:
      break
  return rows
