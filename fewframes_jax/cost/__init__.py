"""What a network costs, in FLOPs, time and memory.

  flops.py         XLA's FLOP counts of compiled functions, scans counted for every step; `model_cost`.
  flops_report.py  the FLOPs table of a config (`main --mode=flops`): teacher vs the student at each k.
  timing.py        the timing harness: synthetic batches, timed and interleaved calls, result rows,
                   student/teacher ratios, the devices' peak TFLOP/s, the machine, tables.
  compute.py       in-memory benchmarks: eval forwards (`inference.Scorer`) and train steps.
  pipeline.py      TFRecord benchmarks: the input pipeline alone, and end-to-end eval.

The command line is `python -m fewframes_jax.benchmark`.
"""
