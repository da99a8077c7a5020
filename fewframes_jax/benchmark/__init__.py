"""Measured cost: what a network, an input path and a frame selector cost in time, FLOPs and bytes.

  compute.py         in-memory benchmarks: eval forwards (`inference.Forward`) and train steps.
  pipeline.py        TFRecord benchmarks: the input pipeline alone, end-to-end eval, the served SavedModel.
  exit_pipeline.py   batched early exit from TFRecords against the fixed k_max student.
  restart.py         what a preemption costs: the input stream's restart from a saved position.
  selection_cost.py  a frame selector counted whole: FLOPs (student + scorer), frames and bytes read.
  flops_report.py    the FLOPs table of a config (`main --mode=flops`): teacher vs the student at each k.
  timing.py          the timing harness: synthetic batches, timed and interleaved calls, result rows,
                     student/teacher ratios, the devices' peak TFLOP/s, the machine, tables.

FLOP counting itself (XLA cost analysis) is `metrics/flops.py`. The command line is
`python -m fewframes_jax.benchmark <subcommand>` (`__main__.py`); results go in BENCHMARKS.md.
"""
