"""CPU per video of offline scoring (`--mode=eval` and `--mode=predict` of a k = 10 student), as a user runs
it, on YouTube-8M-shaped records; optionally side by side with another checkout of this project
(BENCHMARKS.md, "Offline scoring").

  python tools/offline_scoring_cost.py --out=/tmp/offline                          # this checkout
  python tools/offline_scoring_cost.py --out=/tmp/offline --other_tree=/tmp/before # and another one

What it does: writes two sets of YouTube-8M-shaped eval records (`benchmark.pipeline.yt8m_shaped_records`:
4,716 classes, lengths log-uniform in 120..360 frames, 1,024 + 128 bytes per frame) of `--small` and
`--large` videos; trains a `configs/nextvlad_k10.py:cpu` student alone (`mode=student_only`, two steps:
the weights do not matter for the cost) on the small set; then runs each command on each set, in fresh
processes, and reads the child's CPU time (user + system, `os.wait4`). The marginal CPU per video is
(CPU on the large set - CPU on the small set) / (large - small): the per-video work, without the fixed
cost of a command (interpreter and JAX start, restore, compile, pipeline set-up), which the table gives
apart (the CPU of the small run minus small x marginal). Commands and checkouts alternate within a
round, rounds repeat `--rounds` times; the table gives medians and every round's figure, and the last
lines say whether every checkout and round printed the same metrics and wrote the same predictions.
"""
import argparse
import os
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG = "configs/nextvlad_k10.py:cpu"


def _python(tree: str, args, log: str) -> float:
  """Runs `python -m fewframes_jax.main <args>` with `tree`'s package in a fresh process; its CPU seconds."""
  env = dict(os.environ, PYTHONPATH=tree, JAX_PLATFORMS="cpu")
  with open(log, "w") as out:
    proc = subprocess.Popen([sys.executable, "-m", "fewframes_jax.main", *args], cwd=tree, env=env,
                            stdout=out, stderr=subprocess.STDOUT)
    _, status, usage = os.wait4(proc.pid, 0)
  proc.returncode = os.waitstatus_to_exitcode(status)
  if proc.returncode != 0:
    raise RuntimeError(f"{' '.join(args)} (in {tree}) failed; see {log}")
  return usage.ru_utime + usage.ru_stime


def prepare(out: str, small: int, large: int) -> dict:
  """The record sets and the trained run (reused when present)."""
  sys.path.insert(0, HERE)
  from fewframes_jax.benchmark import pipeline  # pylint: disable=g-import-not-at-top
  patterns = {}
  for n in (small, large):
    folder = os.path.join(out, f"records{n}")
    patterns[n] = os.path.join(folder, "eval-*.tfrecord")
    if not os.path.isdir(folder):
      pipeline.yt8m_shaped_records(folder, num_videos=n, num_classes=4716)
  run = os.path.join(out, "run")
  if not os.path.isdir(os.path.join(run, "checkpoints")):
    _python(HERE, [f"--config={CONFIG}", f"--workdir={run}", "--config.mode=student_only",
                   f"--config.data.train_pattern={patterns[small]}", f"--config.data.eval_pattern={patterns[small]}",
                   f"--config.data.num_train_examples={small}", "--config.train.num_steps=2"],
            os.path.join(out, "train.log"))
  return {"patterns": patterns, "run": run}


def command(mode: str, run: str, pattern: str, out: str, tag: str):
  args = [f"--mode={mode}", f"--config={CONFIG}", f"--workdir={run}", f"--config.data.eval_pattern={pattern}"]
  if mode == "predict":
    args.append(f"--output={os.path.join(out, tag + '.csv')}")
  return args


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--out", required=True, help="scratch folder (records, the run, logs, CSVs)")
  parser.add_argument("--other_tree", default="", help="another checkout of this project: measured alike")
  parser.add_argument("--small", type=int, default=1024)
  parser.add_argument("--large", type=int, default=4096)
  parser.add_argument("--rounds", type=int, default=3)
  parser.add_argument("--modes", default="eval,predict")
  args = parser.parse_args()
  args.out = os.path.abspath(args.out)  # the commands run in each checkout's folder
  os.makedirs(args.out, exist_ok=True)
  made = prepare(args.out, args.small, args.large)
  trees = {"this": HERE}
  if args.other_tree:
    trees["other"] = os.path.abspath(args.other_tree)
  modes = args.modes.split(",")
  cpu = {(t, m, n): [] for t in trees for m in modes for n in (args.small, args.large)}
  for r in range(args.rounds):
    order = list(trees) if r % 2 == 0 else list(reversed(trees))
    for mode in modes:
      for tree in order:
        for n in (args.small, args.large):
          tag = f"{tree}_{mode}_{n}_round{r}"
          cpu[tree, mode, n].append(_python(trees[tree], command(mode, made["run"], made["patterns"][n], args.out, tag),
                                            os.path.join(args.out, tag + ".log")))
    print(f"round {r + 1}/{args.rounds} done at {time.strftime('%H:%M:%S')}, load {os.getloadavg()[0]:.1f}",
          flush=True)
  span = args.large - args.small
  print(f"\n| checkout | command | marginal CPU ms/video (median) | rounds | fixed CPU s per command (median) |")
  print("|---|---|---:|---|---:|")
  for tree in trees:
    for mode in modes:
      small, large = cpu[tree, mode, args.small], cpu[tree, mode, args.large]
      marginal = [1000 * (b - a) / span for a, b in zip(small, large)]
      fixed = [a - args.small * m / 1000 for a, m in zip(small, marginal)]
      print(f"| {tree} | --mode={mode} | {statistics.median(marginal):.2f} | "
            f"{', '.join(f'{m:.2f}' for m in marginal)} | {statistics.median(fixed):.1f} |")
  for mode, output in (("predict", ".csv"), ("eval", ".log")):
    if mode not in modes:
      continue
    for n in (args.small, args.large):
      first = _result(os.path.join(args.out, f"this_{mode}_{n}_round0{output}"), mode)
      same = all(_result(os.path.join(args.out, f"{t}_{mode}_{n}_round{r}{output}"), mode) == first
                 for t in trees for r in range(args.rounds))
      print(f"{mode} on {n} videos: {'the same' if same else 'DIFFERENT'} "
            f"{'predictions' if mode == 'predict' else 'metric lines'} in every checkout and round")


def _result(path: str, mode: str):
  """What a command returned: the CSV's bytes (predict), or the metric lines it printed (eval)."""
  with open(path, "rb") as f:
    text = f.read()
  return text if mode == "predict" else [line for line in text.decode().splitlines() if " GAP " in line]


if __name__ == "__main__":
  main()
