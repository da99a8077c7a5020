"""Throughput benchmarks. Subcommands (argparse; more can be added beside `input`):

  input   the tf.data input pipeline alone (`yt8m.make_dataset`, training mode, uint8 frames out):
          python -m fewframes_jax.benchmark input --file_pattern='/data/yt8m/frame/train*.tfrecord' \\
              --batch_size=64 [--num_batches=200 --json_out=input.json]
          An empty --file_pattern benchmarks the bundled train split (generated on first use).

This module imports without TensorFlow; the input benchmark imports it when it runs.
"""
import argparse
import json
import os
import sys
import time
from typing import Any, Dict, Optional, Sequence


def benchmark_input(file_pattern: str = "", batch_size: int = 64, num_batches: int = 200, *,
                    warmup_batches: int = 10, num_classes: int = 0, max_frames: int = 300,
                    feature_names: Sequence[str] = ("rgb", "audio"),
                    feature_sizes: Sequence[int] = (1024, 128), training: bool = True,
                    seed: int = 0) -> Dict[str, Any]:
  """Measures how fast `yt8m.make_dataset` delivers numpy batches on this host.

  Args:
    file_pattern: TFRecord glob; empty: the bundled train split (its class count is used).
    batch_size: B.
    num_batches: timed batches (after `warmup_batches` untimed ones). In eval mode
      (`training=False`) the pass may end sooner; the batches actually read are counted.
    num_classes: C for label validation; 0: the bundled count, or 4716 (the 2017 vocabulary, which
      also admits every 2018 label) for a given pattern.
    max_frames, feature_names, feature_sizes, training, seed: as `make_dataset`.

  Returns:
    {"videos_per_sec", "batches_per_sec", "batches", "videos", "seconds", "cpu_ms_per_video",
     "batch_size", "max_frames", "frame_bytes", "file_pattern", "training",
     "load_average" (1/5/15 min, before and after), "cpus"}.
  """
  from fewframes_jax.data import yt8m  # pylint: disable=g-import-not-at-top  (imports TensorFlow)

  if not file_pattern:
    from fewframes_jax.data import bundled  # pylint: disable=g-import-not-at-top
    file_pattern, _, bundled_classes = bundled.ensure_bundled()
    num_classes = num_classes or bundled_classes
  num_classes = num_classes or 4716
  load_before = os.getloadavg()
  ds = yt8m.make_dataset(file_pattern, batch_size, num_classes=num_classes, max_frames=max_frames,
                         training=training, seed=seed, feature_names=tuple(feature_names),
                         feature_sizes=tuple(feature_sizes), process_index=0, process_count=1)
  batches = yt8m.as_numpy_batches(ds)
  for _ in range(warmup_batches):
    if next(batches, None) is None:
      break
  count, videos = 0, 0
  start, cpu_start = time.perf_counter(), time.process_time()
  for batch in batches:
    videos += int(batch["valid"].sum())
    count += 1
    if count >= num_batches:
      break
  seconds = time.perf_counter() - start
  cpu_seconds = time.process_time() - cpu_start
  return {
      "videos_per_sec": videos / seconds if seconds > 0 else float("nan"),
      "batches_per_sec": count / seconds if seconds > 0 else float("nan"),
      "batches": count,
      "videos": videos,
      "seconds": seconds,
      # CPU time of this process (all pipeline threads) per video: comparable across machine loads.
      "cpu_ms_per_video": 1000 * cpu_seconds / videos if videos else float("nan"),
      "batch_size": batch_size,
      "max_frames": max_frames,
      "frame_bytes": int(sum(feature_sizes)),
      "file_pattern": file_pattern,
      "training": training,
      "load_average": {"before": list(load_before), "after": list(os.getloadavg())},
      "cpus": os.cpu_count(),
  }


def _input_main(args: argparse.Namespace) -> Dict[str, Any]:
  result = benchmark_input(args.file_pattern, args.batch_size, args.num_batches,
                           warmup_batches=args.warmup_batches, num_classes=args.num_classes,
                           max_frames=args.max_frames, feature_names=tuple(args.feature_names.split(",")),
                           feature_sizes=tuple(int(s) for s in args.feature_sizes.split(",")),
                           training=not args.eval)
  load = result["load_average"]["after"]
  print(f"input pipeline: {result['videos_per_sec']:.0f} videos/s ({result['batches']} batches of "
        f"{result['batch_size']}, {result['max_frames']} frames x {result['frame_bytes']} uint8, "
        f"{result['seconds']:.1f} s; {result['cpu_ms_per_video']:.3f} CPU ms per video; "
        f"{result['cpus']} CPUs, load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f})")
  return result


def _parser() -> argparse.ArgumentParser:
  parser = argparse.ArgumentParser(prog="python -m fewframes_jax.benchmark", description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  commands = parser.add_subparsers(dest="command", required=True)
  p = commands.add_parser("input", help="tf.data input pipeline throughput (videos/s)")
  p.add_argument("--file_pattern", default="", help="TFRecord glob; empty: the bundled train split")
  p.add_argument("--batch_size", type=int, default=64)
  p.add_argument("--num_batches", type=int, default=200)
  p.add_argument("--warmup_batches", type=int, default=10)
  p.add_argument("--num_classes", type=int, default=0,
                 help="0: the bundled count, or 4716 for a given pattern")
  p.add_argument("--max_frames", type=int, default=300)
  p.add_argument("--feature_names", default="rgb,audio")
  p.add_argument("--feature_sizes", default="1024,128")
  p.add_argument("--eval", action="store_true", help="time the eval pipeline (one pass, padded)")
  p.add_argument("--json_out", default="", help="also write the result as JSON here")
  p.set_defaults(run=_input_main)
  return parser


def main(argv: Optional[Sequence[str]] = None) -> None:
  args = _parser().parse_args(sys.argv[1:] if argv is None else argv)
  result = args.run(args)
  if args.json_out:
    with open(args.json_out, "w") as f:
      json.dump(result, f, indent=1)


if __name__ == "__main__":
  main()
