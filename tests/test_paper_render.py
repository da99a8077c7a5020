"""The paper's tables in markdown: seed means and spreads, the best cell in bold, dashes for missing
cells, the ordering counts, the whole report, and the series the figures draw."""
import numpy as np

from fewframes_jax.paper import grid as grid_lib
from fewframes_jax.paper import render
from fewframes_jax.paper.grid import Grid, baseline_cell, distill_cell, reported_cell, teacher_cell


def _fake_results(grid):
  rng = np.random.default_rng(0)
  return {c.key: {"gap": float(rng.uniform(0.3, 0.9)), "map_all_classes": float(rng.uniform(0.1, 0.5)),
                  "flops": 1e6 * (c.k or 60), "params": 1000}
          for c in grid_lib.build_cells(grid)}


def _number(cell: str) -> float:
  return float(cell.strip("*").split("±")[0])


def test_table1_cells_are_seed_means_with_the_best_in_bold():
  grid = Grid(seeds=(0, 1, 2), ks=(6, 10), sections=("table1",))
  results = _fake_results(grid)
  rows = render.parse_markdown_table(render.table1_markdown(results, grid, "hrnn"))
  assert rows[0] == ["Model", "k=6 GAP", "k=6 mAP†", "k=10 GAP", "k=10 mAP†"]
  by_label = {r[0]: r[1:] for r in rows[1:]}
  gaps = [results[f"hrnn/seed{s}/random_k10"]["gap"] for s in range(3)]
  mean, sd = np.mean(gaps), np.std(gaps, ddof=1)
  assert by_label["Random-k"][2].strip("*") == f"{mean:.3f}±{sd:.3f}"
  # L_rep alone is reported after its stage-2 fine-tune; its stage 1 has a row of its own.
  ft = [results[f"hrnn/seed{s}/serial_rep_k6_ft"]["gap"] for s in range(3)]
  assert by_label["Serial, L_rep (+ stage-2 CE fine-tune)"][0].strip("*").startswith(f"{np.mean(ft):.3f}±")
  stage1 = [results[f"hrnn/seed{s}/serial_rep_k6"]["gap"] for s in range(3)]
  assert by_label["*Serial, L_rep, stage 1 only*"][0].startswith(f"{np.mean(stage1):.3f}±")
  # Exactly one bold cell per column, on the highest mean.
  for col in range(4):
    values = [r[col] for label, r in by_label.items()
              if r[col] and not label.startswith("*") and "Teacher" not in label]
    bold = [v for v in values if v.startswith("**")]
    assert len(bold) == 1 and _number(bold[0]) == max(map(_number, values))


def test_tables_show_a_dash_for_missing_cells_and_single_seed_values():
  grid = Grid(seeds=(0,), ks=(10,), sections=("table1", "table2", "table4", "cross"), anchor_k=10)
  results = {"hrnn/seed0/uniform_k10": {"gap": 0.5, "map_all_classes": 0.25}}
  t1 = {r[0]: r[1:] for r in render.parse_markdown_table(render.table1_markdown(results, grid, "hrnn"))}
  assert t1["Uniform-k"] == ["**0.500**", "**0.250**"] and t1["Random-k"] == ["–", "–"]
  t2 = render.parse_markdown_table(render.table2_markdown(results, grid))
  assert t2[0][2:] == ["10%", "25%", "50%", "100%"]
  assert [r for r in t2 if r[:2] == ["Uniform-k", "GAP"]][0][2:] == ["–", "–", "–", "0.500"]
  assert len(render.parse_markdown_table(render.table4_markdown(results, grid))) == 1 + 6
  cross = render.parse_markdown_table(render.cross_markdown(results, grid))
  assert ["none", "hrnn, Uniform-k", "10", "0.500", "0.250", "–"] in cross
  assert any("ensemble" in r[0] for r in cross)


def test_table3_compares_time_and_flops_with_the_teacher():
  grid = Grid(seeds=(0, 1), sections=("table3",), table3_ks=(10,))
  timings = {}
  for s, (t_sec, s_sec) in enumerate(((1.0, 0.2), (1.2, 0.2))):
    timings[teacher_cell("hrnn", s).key] = dict(seconds=t_sec, flops=4e7, params=5000, frames=60, videos=1000)
    timings[reported_cell(*grid_lib.BEST_ROW, "hrnn", s, 10).key] = dict(seconds=s_sec, flops=1e7, params=5000,
                                                                        frames=10, videos=1000)
  rows = {r[0]: r for r in render.parse_markdown_table(render.table3_markdown(timings, grid, "hrnn"))}
  student = rows["k = 10 (Serial, L_rep, L_pred, L_CE)"]
  assert student[1:] == ["10", "0.20±0.00", "-81.8%", "10.00±0.00", "-75.0%", "5,000"]
  assert rows["Teacher-Skyline"][3] == "+0.0%" and "over 1000 eval videos" in render.table3_markdown(timings, grid, "hrnn")


def test_ordering_checks_count_the_seeds_where_a_claim_holds():
  grid = Grid(seeds=(0, 1), ks=(10,), sections=("table1",), baselines=("uniform", "random", "first", "last"),
              rows=(("serial", "rep_pred_ce"),))
  gaps = {0: dict(teacher=0.9, student=0.8, uniform=0.7, random=0.6, first=0.5, last=0.4),
          1: dict(teacher=0.9, student=0.65, uniform=0.7, random=0.75, first=0.5, last=0.4)}
  results = {}
  for s, g in gaps.items():
    results[teacher_cell("hrnn", s).key] = {"gap": g["teacher"]}
    results[distill_cell("hrnn", s, "serial", "rep_pred_ce", 10).key] = {"gap": g["student"]}
    for m in ("uniform", "random", "first", "last"):
      results[baseline_cell("hrnn", s, 10, m).key] = {"gap": g[m]}
  checks = dict(render.ordering_checks(results, grid, "hrnn"))
  assert checks["Teacher-Skyline > every teacher-student row"][10] == (2, 2)
  assert checks["Serial, L_rep, L_pred, L_CE > Uniform-k"][10] == (1, 2)
  assert checks["Uniform-k > Random-k"][10] == (1, 2)
  assert checks["Random-k > First-k and Last-k"][10] == (2, 2)
  assert dict(render.ordering_checks(results, grid, "hrnn", "map_all_classes"))["Uniform-k > Random-k"][10] == (0, 0)
  table = {r[0]: r[1:] for r in render.parse_markdown_table(render.orderings_markdown(results, grid, "hrnn"))}
  assert table["Uniform-k > Random-k"] == ["1/2", "–"]


def test_report_has_each_chosen_section_once_under_its_title():
  grid = Grid(seeds=(0, 1), ks=(10,), sections=("table1", "table4"), anchor_k=10)
  markdown = render.render_markdown(_fake_results(grid), {}, grid, title="preset `small` x 3 schedule")
  assert markdown.startswith("# Paper tables: preset `small` x 3 schedule, seeds 0, 1\n")
  titles = [line for line in markdown.splitlines() if line.startswith("#")]
  assert titles[1:] == ["## Table 1 (hrnn)", "### Which of the paper's orderings hold (hrnn)",
                        "## Table 4: intermediate vs final representation matching"]


def test_plot_series_average_over_seeds_and_keep_one_point_per_network():
  grid = Grid(seeds=(0, 1), ks=(6, 10), sections=("table1", "cross"), baselines=("uniform",),
              rows=(("serial", "rep"),), anchor_k=10)
  results = _fake_results(grid)
  s = render.gap_vs_k_series(results, grid, "hrnn")
  assert set(s["series"]) == {"Uniform-k", "Serial, L_rep"}
  ft = [results[f"hrnn/seed{seed}/serial_rep_k10_ft"]["gap"] for seed in (0, 1)]  # reported after stage 2
  assert s["series"]["Serial, L_rep"][1] == (10, *render.mean_std(ft))
  assert s["teacher"][0] == np.mean([results[f"hrnn/seed{seed}/teacher"]["gap"] for seed in (0, 1)])
  points = render.pareto_points(results, grid)
  names = [(p["family"], p["kind"], p["k"]) for p in points]
  assert len(names) == len(set(names))  # hrnn's k=10 cells appear in Table 1 and the cross rows: once
  assert ("nextvlad->lstm", "student", 10) in names and ("nextvlad+hrnn->hrnn", "student", 10) in names
  assert ("hrnn", "baseline", 6) in names and all(p["flops"] > 0 for p in points)
