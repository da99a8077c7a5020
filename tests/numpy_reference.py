"""Plain numpy building blocks for the models' reference implementations in the tests."""
import jax
import jax.numpy as jnp
import numpy as np

from fewframes_jax.models.common import BN_EPSILON


def perturb_variables(variables, seed, scale=0.3):
  """Random values for every variable, so that a test cannot pass on an initialiser's zeros or ones:
  BN scales and running variances in [0.5, 1.5], running means and biases ~ N(0, scale), every other
  parameter its initial value plus N(0, scale) noise."""
  leaves, treedef = jax.tree_util.tree_flatten_with_path(variables)
  rng = np.random.default_rng(seed)
  out = []
  for path, leaf in leaves:
    name = jax.tree_util.keystr(path)
    if name.endswith("['var']") or name.endswith("['scale']"):
      value = rng.uniform(0.5, 1.5, leaf.shape)
    elif name.endswith("['mean']") or name.endswith("['bias']"):
      value = rng.normal(scale=scale, size=leaf.shape)
    else:
      value = np.asarray(leaf) + rng.normal(scale=scale, size=leaf.shape)
    out.append(jnp.asarray(value, jnp.float32))
  return jax.tree_util.tree_unflatten(treedef, out)


def float64(tree):
  return jax.tree_util.tree_map(lambda a: np.asarray(a, np.float64), tree)


def np_bn(z, params, stats):
  """Batch norm with given statistics {'mean', 'var'} and params {'scale', 'bias'}."""
  return ((z - np.asarray(stats["mean"])) / np.sqrt(np.asarray(stats["var"]) + BN_EPSILON)
          * np.asarray(params["scale"]) + np.asarray(params["bias"]))


def np_sigmoid(z):
  return 1.0 / (1.0 + np.exp(-z))


def np_softmax(z):
  e = np.exp(z - z.max())
  return e / e.sum()


def np_l2(v):
  return v / np.sqrt(max(np.sum(v * v), 1e-12))


def frames_with_garbage(seed: int, lengths, steps: int, dim: int, garbage: bool = True) -> np.ndarray:
  """f32[B, steps, dim] of real frames (standard normal), with garbage (normal, scale 50) or zeros after
  each video's length: what a model must ignore."""
  rng = np.random.default_rng(seed)
  x = rng.normal(size=(len(lengths), steps, dim)).astype(np.float32)
  pad = np.arange(steps)[None, :] >= np.asarray(lengths)[:, None]
  x[pad] = rng.normal(scale=50.0, size=x[pad].shape) if garbage else 0.0
  return x
