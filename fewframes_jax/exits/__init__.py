"""Early exit of an any-k student: read a video's frames in its nested order and stop once settled.

  early_exit.py  the exit plan (a student's forward at each exit, carried sums where the family allows),
                 the training-free rules' scores, and batched waves that run each video to its exit.
  exit_gate.py   the learned gate: predicts from the predictions so far whether reading on would still
                 change the video's top 20; fitted and saved with the run.
  exit_curve.py  GAP against frames read for every budget and rule over a threshold sweep, with FLOPs.

The policy itself (`specs.ExitPolicy`, a student spec's `exits`) is part of the run's specs. The command
line `python -m fewframes_jax.exits` fits the gate and writes the curve of a trained any-k run.
"""
