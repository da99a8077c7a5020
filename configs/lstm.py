"""A plain 2-layer LSTM over frames (the YouTube-8M starter's LstmModel) as teacher and k-frame student.

  python -m fewframes_jax.main --config=configs/lstm.py:k=10,cpu --workdir=runs/lstm_k10_cpu
"""
from fewframes_jax.configs import base


def get_config(arg=None):
  return base.experiment("lstm", k=30, arg=arg)
