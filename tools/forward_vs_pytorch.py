"""The NeXtVLAD forward of this project against a PyTorch NeXtVLAD of the same sizes, and against another
checkout of this project, timed in interleaved rounds on one machine (BENCHMARKS.md, "The forward against
PyTorch and against an older main").

  python tools/forward_vs_pytorch.py                           # ours vs PyTorch, in one process
  python tools/forward_vs_pytorch.py --other_tree=/tmp/ff_old  # ours vs another checkout (subprocesses)

PyTorch is not a dependency of the project: install it only to run this (`pip install torch`). The PyTorch
network is written here from Lin et al.'s NeXtVLAD (expansion FC, group attention, cluster softmax with
batch norm, VLAD with intra-normalisation, hidden FC + batch norm, SE context gating, logistic head), in
eval mode, with the sizes of `configs/base.model_config('nextvlad')` (the paper's: 128 clusters, hidden
2048, 8 groups, expansion 2) on rgb only (1024 features) and 4,716 classes. Both take float32 frames
[B, T, 1024] and the true lengths, and return class probabilities; the time is the model alone (no
dequantization, no frame selection). Each round times every network `--steps` calls after one untimed
call; the table gives the median over rounds of videos/s and of the per-round ratio ours / theirs.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time

import numpy as np

NUM_CLASSES = 4716
FEATURES = 1024


def jax_forwards(batch: int, frames_teacher: int, k: int, seed: int = 0):
  """{'teacher', 'student_k{k}'}: (a no-argument call that runs the jitted forward once and blocks, its
  inputs' frames), for this checkout's NeXtVLAD (`sys.path[0]` decides which checkout)."""
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  from configs import base  # pylint: disable=g-import-not-at-top
  from fewframes_jax.models import build_model  # pylint: disable=g-import-not-at-top
  try:
    from fewframes_jax.specs import NetworkSpec  # pylint: disable=g-import-not-at-top
    network = NetworkSpec.from_config(base.model_config("nextvlad"))
  except ImportError:  # a checkout from before the typed specs: build_model reads the ConfigDict
    network = base.model_config("nextvlad")
  model = build_model(network, num_classes=NUM_CLASSES, feature_sizes=(FEATURES,))
  rng = np.random.default_rng(seed)
  out = {}
  for name, frames in (("teacher", frames_teacher), (f"student_k{k}", k)):
    x = jnp.asarray(rng.standard_normal((batch, frames, FEATURES)).astype(np.float32))
    n = jnp.full((batch,), frames, jnp.int32)
    key = jax.random.PRNGKey(seed)
    variables = jax.jit(lambda x, n: model.init({"params": key, "dropout": key, "frames": key}, x, n,
                                               train=False))(x, n)
    fn = jax.jit(lambda v, x, n: model.apply(v, x, n, train=False).probabilities)
    fn(variables, x, n).block_until_ready()
    out[name] = (lambda fn=fn, v=variables, x=x, n=n: fn(v, x, n).block_until_ready())
  return out


def torch_forwards(batch: int, frames_teacher: int, k: int, seed: int = 0, threads: int = 0):
  """As `jax_forwards`, for the PyTorch NeXtVLAD (eval mode, inference mode)."""
  import torch  # pylint: disable=g-import-not-at-top
  from torch import nn  # pylint: disable=g-import-not-at-top
  import torch.nn.functional as F  # pylint: disable=g-import-not-at-top
  if threads:
    torch.set_num_threads(threads)
  torch.manual_seed(seed)

  class NeXtVLAD(nn.Module):
    def __init__(self, dim=FEATURES, clusters=128, expansion=2, groups=8, hidden=2048, reduction=8,
                 classes=NUM_CLASSES):
      super().__init__()
      self.clusters, self.groups, self.group_dim = clusters, groups, expansion * dim // groups
      self.expand = nn.Linear(dim, expansion * dim)
      self.attention = nn.Linear(expansion * dim, groups)
      self.assign = nn.Linear(expansion * dim, groups * clusters, bias=False)
      self.assign_bn = nn.BatchNorm1d(groups * clusters)
      self.centers = nn.Parameter(torch.randn(1, self.group_dim, clusters) * 0.01)
      self.vlad_bn = nn.BatchNorm1d(clusters * self.group_dim)
      self.hidden = nn.Linear(clusters * self.group_dim, hidden, bias=False)
      self.hidden_bn = nn.BatchNorm1d(hidden)
      self.gate1 = nn.Linear(hidden, hidden // reduction, bias=False)
      self.gate1_bn = nn.BatchNorm1d(hidden // reduction)
      self.gate2 = nn.Linear(hidden // reduction, hidden, bias=False)
      self.gate2_bn = nn.BatchNorm1d(hidden)
      self.logits = nn.Linear(hidden, classes)

    def forward(self, x, num_frames):
      b, t, _ = x.shape
      mask = (torch.arange(t)[None, :] < num_frames[:, None]).to(x.dtype)            # [B, T]
      x = self.expand(x)                                                               # [B, T, lN]
      attention = torch.sigmoid(self.attention(x)) * mask[..., None]                   # [B, T, G]
      assign = self.assign_bn(self.assign(x).reshape(b * t, -1)).reshape(b, t * self.groups, self.clusters)
      assign = F.softmax(assign, dim=-1) * attention.reshape(b, t * self.groups, 1)    # [B, T*G, K]
      groups = x.reshape(b, t * self.groups, self.group_dim)                           # [B, T*G, lN/G]
      vlad = torch.matmul(assign.transpose(1, 2), groups).transpose(1, 2)             # [B, lN/G, K]
      vlad = vlad - assign.sum(1, keepdim=True) * self.centers
      vlad = F.normalize(vlad, dim=1).reshape(b, -1)                                   # intra-normalised
      vlad = self.vlad_bn(vlad)
      hidden = self.hidden_bn(self.hidden(vlad))
      gates = torch.sigmoid(self.gate2_bn(self.gate2(F.relu(self.gate1_bn(self.gate1(hidden))))))
      return torch.sigmoid(self.logits(hidden * gates))

  model = NeXtVLAD().eval()
  rng = np.random.default_rng(seed)
  out = {}
  for name, frames in (("teacher", frames_teacher), (f"student_k{k}", k)):
    x = torch.from_numpy(rng.standard_normal((batch, frames, FEATURES)).astype(np.float32))
    n = torch.full((batch,), frames, dtype=torch.int64)

    def call(x=x, n=n):
      with torch.inference_mode():
        return model(x, n)

    call()
    out[name] = call
  return out


def time_calls(calls, steps: int):
  """{name: seconds per call (median of `steps`)} for one round, the networks one after the other."""
  out = {}
  for name, call in calls.items():
    times = []
    for _ in range(steps):
      start = time.perf_counter()
      call()
      times.append(time.perf_counter() - start)
    out[name] = statistics.median(times)
  return out


def table(rows_ours, rows_theirs, batch: int, theirs: str) -> str:
  """Markdown: per network, videos/s (median over rounds) of both and the median per-round ratio."""
  lines = [f"| network | ours videos/s | {theirs} videos/s | ours / {theirs} (median, min-max over rounds) |",
           "|---|---:|---:|---:|"]
  for name in rows_ours[0]:
    ours = [batch / r[name] for r in rows_ours]
    other = [batch / r[name] for r in rows_theirs]
    ratios = [a / b for a, b in zip(ours, other)]
    lines.append(f"| {name} | {statistics.median(ours):,.0f} | {statistics.median(other):,.0f} | "
                 f"{statistics.median(ratios):.2f}x ({min(ratios):.2f}-{max(ratios):.2f}) |")
  return "\n".join(lines)


def _worker(args) -> None:
  """One round of this checkout's JAX forwards in a fresh process: prints {name: seconds per call}."""
  calls = jax_forwards(args.batch, args.frames, args.k)
  print(json.dumps(time_calls(calls, args.steps)))


def _round_in(tree: str, args):
  command = [sys.executable, os.path.abspath(__file__), "--worker", f"--batch={args.batch}", f"--frames={args.frames}",
             f"--k={args.k}", f"--steps={args.steps}"]
  env = dict(os.environ, PYTHONPATH=tree, JAX_PLATFORMS="cpu")
  done = subprocess.run(command, cwd=tree, env=env, capture_output=True, text=True, check=True)
  return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--batch", type=int, default=64)
  parser.add_argument("--frames", type=int, default=300, help="the teacher's frames")
  parser.add_argument("--k", type=int, default=10, help="the student's frames")
  parser.add_argument("--steps", type=int, default=5, help="timed calls per network and round")
  parser.add_argument("--rounds", type=int, default=5)
  parser.add_argument("--threads", type=int, default=0, help="PyTorch intra-op threads (0: its default)")
  parser.add_argument("--other_tree", default="", help="another checkout of this project: compare with it")
  parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
  args = parser.parse_args()
  if args.worker:
    return _worker(args)
  here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  ours, theirs = [], []
  if args.other_tree:
    for _ in range(args.rounds):  # alternating fresh processes, so neither checkout runs on a warmer machine
      ours.append(_round_in(here, args))
      theirs.append(_round_in(os.path.abspath(args.other_tree), args))
    name = "other"
  else:
    sys.path.insert(0, here)
    jax_calls = jax_forwards(args.batch, args.frames, args.k)
    torch_calls = torch_forwards(args.batch, args.frames, args.k, threads=args.threads)
    for _ in range(args.rounds):
      ours.append(time_calls(jax_calls, args.steps))
      theirs.append(time_calls(torch_calls, args.steps))
    name = "PyTorch"
  print(f"batch {args.batch}, float32, rgb only ({FEATURES}), {NUM_CLASSES} classes, {args.rounds} rounds x "
        f"{args.steps} calls; load {os.getloadavg()[0]:.1f}")
  print(table(ours, theirs, args.batch, name))


if __name__ == "__main__":
  main()
