"""The selector study's report (fewframes_jax/paper/selector_render.py) on made-up records: mean±sd per row,
the targets' arithmetic (gap closed, per-seed difference against the seed spread), and the plots."""
import os

import pytest

from fewframes_jax.paper import selector_render as sr

SEEDS, KS = (0, 1, 2), (6, 10)


def key(family, seed, row, k):
  return f"{family}/seed{seed}/{row}_k{k}"


def records():
  gaps = {"uniform+distill": (0.50, 0.52, 0.54), "far_from_mean": (0.70, 0.71, 0.72),
          "far_from_mean+distill": (0.74, 0.75, 0.76), "rank_all_ffm+distill": (0.60, 0.62, 0.64)}
  out = {f"h/seed{s}/teacher": {"gap": 0.6} for s in SEEDS}
  for row, values in gaps.items():
    for k in KS:
      for s, g in zip(SEEDS, values):
        out[key("h", s, row, k)] = {"gap": g, "map": g - 0.1}
  return out


def test_targets_and_tables(tmp_path):
  rows = ["uniform+distill", "far_from_mean", "far_from_mean+distill", "rank_all_ffm+distill", "rank_audio+distill"]
  costs = {r: {k: {"flops": 1e6 * k, "scorer_flops": 0.0, "frames_read": k, "bytes_read": 1152.0 * k}
               for k in KS} for r in rows}
  lines = sr.targets(records(), key, "h", SEEDS, KS, rows)
  assert "passes the teacher" in lines[0] and "met" in lines[0] and sr.name("far_from_mean+distill") in lines[0]
  assert "-0.130±0.010" in lines[1] and "below it by more than the seed spread" in lines[1]
  recall = {"far_from_mean": {6: {"burst": 0.987, "long": 0.5}, 10: {"burst": 0.99, "long": 0.75}}}
  path = sr.write_report(str(tmp_path), records(), family="h", seeds=SEEDS, ks=KS, rows=rows, key=key,
                         costs=costs, command="cmd", recall=recall)
  text = open(path).read()
  assert "| Far-from-mean-k | 0.99 | 0.50 | 0.99 | 0.75 |" in text
  assert "| Far-from-mean-k | 0.710±0.010 | 0.610±0.010 |" in text
  assert sr.name("rank_audio+distill") not in text  # a row without any run is left out
  assert os.path.getsize(os.path.join(tmp_path, "pareto_flops.png")) > 0
  assert os.path.getsize(os.path.join(tmp_path, "pareto_bytes.png")) > 0


def test_gap_closed_below_the_teacher():
  recs = records()
  for s, g in zip(SEEDS, (0.57, 0.58, 0.59)):
    for row in ("far_from_mean+distill",):
      recs[key("h", s, row, 10)]["gap"] = g
  line = sr.targets(recs, key, "h", SEEDS, (10,), ["uniform+distill", "far_from_mean+distill"])[0]
  assert "closes 75% of the gap" in line and "missed" in line
  assert sr.paired([1.0, 2.0], [0.5, 1.5]) == pytest.approx((0.5, 0.0))


def test_the_recall_table_shows_the_label_free_share_only_where_the_data_has_label_free_frames():
  plain = {"far_from_mean": {10: {"burst": 0.99, "long": 0.89}}}
  assert "label-free" not in sr.recall_table(plain, ["far_from_mean"], (10,))
  structured = {"far_from_mean": {10: {"burst": 0.31, "long": 0.36, "label_free_chosen": 0.75,
                                       "label_free_all": 0.078}},
                "uniform": {10: {"burst": 0.40, "long": 1.0, "label_free_chosen": 0.11, "label_free_all": 0.078}}}
  table = sr.recall_table(structured, ["uniform", "far_from_mean"], (10,))
  assert "k=10 label-free chosen / all" in table.splitlines()[0]
  assert "| 0.31 | 0.36 | 0.75 / 0.08 |" in table and "| 0.40 | 1.00 | 0.11 / 0.08 |" in table
