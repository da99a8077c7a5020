"""One trained network ready to score videos: the single inference path of the project.

"Take a trained run, pick the teacher or the student (its k frames, its frame selection), dequantize,
select the frames, apply the model" is written here once. Every consumer uses it: the trainer's own
evaluation (`evaluation/evaluate.py`), the evaluation of a saved workdir and the Kaggle CSV (`evaluation/predict.py`),
the Table 3 timing (`paper/sweep.py`) and the throughput benchmarks (`benchmark/`).

  Selection   which frames a network sees: every frame, or k of them by a selection rule (`sampling/`:
              the fixed rules, the content-aware ones, a learned frame scorer).
  Forward      the static part (a model and its selection): `scorer.apply(variables, frames_u8, num_frames,
              rng)` is the pure forward, uint8 frames -> `ModelOutput`, traceable inside any jit.
  Network     one trained network ready to score videos: a scorer, its variables and the run it came
              from, built from `checkpoint.restore(...)` (`Network.from_restored`) or from a live train
              state; `network.probabilities(frames_u8, num_frames)` is jitted once per network.

Randomness at inference is deterministic: the 'random' sampling rule and WILLOW's random frame
re-sampling (`model.netvlad.random_frames`) draw from `eval_key(batch_index)`, a fixed key per eval
batch, so a re-evaluation reproduces the same numbers.

`cast_for_inference` stores, once, the parameters that a bfloat16 forward casts on every call (the
outputs are bit-identical; see its docstring).
"""
import dataclasses
import functools
from typing import Any, Dict, Optional, Tuple

import jax
import jax.numpy as jnp

from fewframes_jax import models
from fewframes_jax import specs
from fewframes_jax.sampling import methods
from fewframes_jax.data import host_scorer  # no TensorFlow until the host path runs
from fewframes_jax.data.quantization import dequantize
from fewframes_jax.errors import UserError
from fewframes_jax.models.common import ModelOutput
from fewframes_jax.sampling import learned
from fewframes_jax.sampling import scorer_training

NETWORKS = ("teacher", "student")
TRAINING_ONLY = ("projection", scorer_training.JUDGE_KEY)  # student parameters that inference never reads
EVAL_RNG_SEED = 1234  # the base key of every inference-time random draw (fold in the batch index)


def eval_key(batch_index: int = 0) -> jax.Array:
  """The fixed key of eval batch `batch_index`: 'random' frame selection and WILLOW's re-sampling."""
  return jax.random.fold_in(jax.random.PRNGKey(EVAL_RNG_SEED), batch_index)


def model_rngs(rng: jax.Array) -> Dict[str, jax.Array]:
  """The rng streams a model may ask for outside training: only 'frames' (WILLOW's re-sampling).
  Folded from `rng`, so it is independent of the frame-selection draw made with `rng` itself."""
  return {"frames": jax.random.fold_in(rng, 1)}


@dataclasses.dataclass(frozen=True)
class Selection:
  """Which frames a network sees: every frame (`k=None`), or `k` of them by `sampling.methods.select_frames`'s
  `method` (uniform, random, ...), given to the model in `slots` frame slots (default k; an any-k H-RNN
  student at a budget below a whole number of its blocks gets zero padding up to the block, `models.at_budget`)."""
  k: Optional[int] = None
  method: str = "uniform"
  slots: Optional[int] = None
  scorer: Any = None  # method 'learned': its `sampling.learned.FrameScorer` (parameters: the network's)

  def __post_init__(self):
    if self.slots is not None and (self.k is None or self.slots < self.k):
      raise ValueError(f"Selection: slots={self.slots} needs k <= slots (k={self.k})")
    if (self.method == learned.METHOD) != (self.scorer is not None):
      raise ValueError(f"Selection: method={self.method!r} with scorer={self.scorer!r}: the 'learned' "
                       "method, and only it, takes a scorer")

  @property
  def all_frames(self) -> bool:
    return self.k is None

  @property
  def learned(self) -> bool:
    return self.scorer is not None

  def select(self, frames: jax.Array, num_frames: jax.Array, rng: Optional[jax.Array], *,
             return_indices: bool = False, selector_params: Optional[Dict[str, Any]] = None,
             scores: Optional[jax.Array] = None, differentiable: bool = False, sigma: float = 0.5,
             samples: int = 8):
    """frames [B, T, D] (dequantized), num_frames i32[B] -> (frames [B, k, D], num_frames_k i32[B]) by
    `methods.select_frames` (plus the indices i32[B, k] if `return_indices`); unchanged when every
    frame is seen. A learned selection scores the frames with `selector_params` (its scorer's), or takes
    the `scores` f32[B, T] its scorer already gave, and, if `differentiable`, passes gradients to them
    (`learned.select_learned`, perturbed top-k from `rng`)."""
    if self.all_frames:
      return frames, num_frames
    if self.learned:
      if scores is None:
        if selector_params is None:
          raise ValueError("a learned selection needs its scorer's parameters (the student's 'selector')")
        scores = self.scorer.apply({"params": selector_params}, frames, num_frames)
      out = learned.select_learned(frames, num_frames, self.k, scores, differentiable=differentiable, rng=rng,
                                   sigma=sigma, samples=samples, return_indices=return_indices)
    else:
      out = methods.select_frames(frames, num_frames, self.k, self.method, rng=rng,
                                    return_indices=return_indices)
    if return_indices:  # padding slots hold index 0, as every selection's padding does
      return self.pad(out[0]), out[1], self.pad(out[2])
    return self.pad(out[0]), out[1]

  def pad(self, frames_k: jax.Array) -> jax.Array:
    """[B, k, ...] -> [B, slots, ...] with zeros after the k frames (unchanged without extra slots)."""
    extra = (self.slots or 0) - frames_k.shape[1]
    if self.all_frames or extra <= 0:
      return frames_k
    return jnp.pad(frames_k, ((0, 0), (0, extra)) + ((0, 0),) * (frames_k.ndim - 2))

  def input_frames(self, selector_params: Optional[Dict[str, Any]] = None) -> Optional[Tuple[Any, ...]]:
    """What the student-only input path needs (`yt8m.make_dataset(student_frames=...)`, which decodes
    only the k frames the network sees on the host), or None when the host must ship every frame:
      (k, method)                     a fixed rule (it depends on a video's length only);
      (k, 'learned', HostScorer)      a learned selector whose scorer reads one stream (audio or rgb),
                                      given its parameters (`split_selector`): the host decodes that
                                      stream of every frame, scores it (`data/host_scorer.py`) and
                                      decodes the k chosen frames.
    None: all frames, the 'random' rule (its host draws differ from the device's), a content-aware rule
    or a learned scorer of every stream (they look at all of every frame), a learned selector without
    `selector_params`."""
    if self.all_frames or self.method == "random":
      return None
    if self.learned:
      if selector_params is None or self.scorer.streams == "all":
        return None
      span = learned.stream_slice(self.scorer.feature_sizes, self.scorer.streams)
      return self.k, self.method, host_scorer.HostScorer(span, jax.device_get(selector_params), self.scorer.prior)
    if methods.needs_every_frame(self.method):
      return None
    return self.k, self.method

  def describe(self) -> str:
    return "all frames" if self.all_frames else f"{self.k} ({self.method})"


@dataclasses.dataclass(frozen=True)
class Forward:
  """A model and the frames it sees; `apply` is the whole eval forward from uint8 frames."""
  model: Any
  selection: Selection = Selection()

  def apply(self, variables: Dict[str, Any], frames_u8: jax.Array, num_frames: jax.Array,
            rng: Optional[jax.Array] = None, *, preselected: bool = False) -> ModelOutput:
    """Eval-mode forward.

    Args:
      variables: {'params', 'batch_stats'} of `model` (a student's include its classifier).
      frames_u8: uint8[B, T, D] (or [B, k, D] when `preselected`).
      num_frames: i32[B] true lengths (num_frames_k when `preselected`), cut to the frames given as the
        records signature's reader cuts them.
      rng: the eval batch's key (`eval_key`); default `eval_key(0)`.
      preselected: the frames are already this network's selection (the student-only input path).

    Returns:
      ModelOutput (probabilities f32[B, C], representation f32[B, E], ...).
    """
    rng = eval_key(0) if rng is None else rng
    num_frames = jnp.clip(num_frames.astype(jnp.int32), 0, frames_u8.shape[1])
    frames = dequantize(frames_u8, num_frames)
    variables, selector_params = split_selector(variables)
    if preselected:
      frames = self.selection.pad(frames)
    else:
      frames, num_frames = self.selection.select(frames, num_frames, rng, selector_params=selector_params)
    return self.model.apply(variables, frames, num_frames, train=False, rngs=model_rngs(rng))

  def frames_seen(self, max_frames: int) -> int:
    """The number of frame slots the model reads: k, or the padded length T."""
    return max_frames if self.selection.all_frames else self.selection.k

  def cost(self, *, max_frames: int, feature_dim: int) -> Tuple[float, int]:
    """(XLA's FLOPs per video of this forward, its model's parameter count): the model on the frame slots
    it runs on (T, k, or an any-k H-RNN's whole blocks: `Selection.slots`), plus a learned selector's
    scorer on all T = `max_frames` slots."""
    from fewframes_jax.metrics import flops as flops_lib  # pylint: disable=g-import-not-at-top  (XLA cost analysis)
    flops, params = flops_lib.model_cost(self.model, frames=self.selection.slots or self.frames_seen(max_frames),
                                         feature_dim=feature_dim)
    if self.selection.learned:
      flops += learned.scorer_flops(self.selection.scorer, max_frames)
    return flops, params


def split_selector(variables: Dict[str, Any]) -> Tuple[Dict[str, Any], Optional[Dict[str, Any]]]:
  """A student's variables -> (the model's variables, its learned selector's parameters or None)."""
  params = variables.get("params") or {}
  if learned.SELECTOR_KEY not in params:
    return variables, None
  model_params = {k: v for k, v in params.items() if k != learned.SELECTOR_KEY}
  return dict(variables, params=model_params), params[learned.SELECTOR_KEY]


def network_variables(tree: Dict[str, Any], which: str) -> Dict[str, Any]:
  """A network's {'params', 'batch_stats'} from a saved or live state tree ({'teacher': {...} | None,
  'student': {...} | None}), ready for `model.apply`.

  A student that shared the teacher's classifier gets the teacher's head (and its batch statistics),
  so it predicts on its own; the parameters only training uses (`TRAINING_ONLY`: the L_rep projection of
  cross-family training, a `labels` selector's frame judge) are left out.
  Raises ValueError when the tree has no such network.
  """
  if which not in NETWORKS:
    raise ValueError(f"network {which!r}: expected one of {NETWORKS}")
  net = tree.get(which)
  if net is None:
    raise ValueError(f"the run has no {which} (its mode trains no {which})")
  params = {k: v for k, v in net["params"].items() if k not in TRAINING_ONLY}
  batch_stats = dict(net.get("batch_stats") or {})
  if which == "student" and "head" not in params:
    teacher = tree.get("teacher")
    if teacher is None:
      raise ValueError("the student shares the teacher's classifier but the run has no teacher")
    params["head"] = teacher["params"]["head"]
    if "head" in (teacher.get("batch_stats") or {}):
      batch_stats["head"] = teacher["batch_stats"]["head"]
  return {"params": params, "batch_stats": batch_stats}


def student_selection(spec: specs.RunSpec) -> Selection:
  """The frames a fixed-k student is trained on (an any-k student's largest budget); a learned selector
  gets its scorer module from `spec.student.selector`."""
  student = spec.student
  scorer = learned.frame_scorer(student.selector, spec.data.feature_sizes) if student.learned else None
  return Selection(k=student.k, method=student.sampling, scorer=scorer)


def eval_budget(student: specs.StudentSpec, budget: Optional[int] = None) -> Optional[int]:
  """The budget an any-k student is scored at: `budget`, else `student.budget`, else its largest
  (student.k); None for a fixed-k student."""
  if student.budgets is None:
    if budget:
      raise UserError(f"student.budget={budget}: the run's student is not an any-k student (student.k_min is unset)")
    return None
  return int(budget or student.budget or student.k)


def student_forward(spec: specs.RunSpec, model, budget: Optional[int] = None) -> Forward:
  """The student of a run ready to score: its k frames by its selection rule; an any-k student at
  `eval_budget(spec.student, budget)` (its model and frame slots from `models.at_budget`)."""
  k = eval_budget(spec.student, budget)
  if k is None:
    return Forward(model, student_selection(spec))
  budgets = spec.student.budgets
  if not 1 <= k <= budgets.k_max:
    raise UserError(f"student.budget={k}: this any-k student takes budgets in [1, {budgets.k_max}]")
  model, slots = models.at_budget(model, k, budgets.k_max)
  return Forward(model, Selection(k=k, method=budgets.order, slots=slots if slots > k else None,
                                 scorer=student_selection(spec).scorer))  # the learned order's scorer


@dataclasses.dataclass
class Network:
  """One trained network ready to score videos.

  which: 'teacher' | 'student'; forward: its model and frame selection; variables: its
  {'params', 'batch_stats'} (cast for inference when the run computes in bfloat16); spec: the run's
  `specs.RunSpec`; step: the checkpoint step (None for a live state).
  """
  which: str
  forward: Forward
  variables: Dict[str, Any]
  spec: specs.RunSpec
  step: Optional[int] = None

  @classmethod
  def from_restored(cls, restored, which: str, *, cast: bool = True, budget: Optional[int] = None) -> "Network":
    """The teacher or the student of a `checkpoint.restore(...)` result. Raises ValueError when the run
    has no such network. `cast`: store bfloat16-used kernels in bfloat16 (`cast_for_inference`);
    `budget`: an any-k student's budget (default `student.budget`, else its largest)."""
    model = restored.model if which == "teacher" else restored.student_model
    variables = restored.variables if which == "teacher" else restored.student_variables
    if model is None or variables is None:
      raise ValueError(f"the checkpoint (step {restored.step}) has no {which}: its mode is "
                       f"{restored.spec.mode!r}")
    forward = Forward(model) if which == "teacher" else student_forward(restored.spec, model, budget)
    network = cls(which=which, forward=forward, variables=variables, spec=restored.spec, step=restored.step)
    if cast:
      network.variables = cast_for_inference(network.forward, variables, max_frames=network.max_frames,
                                             feature_dim=network.feature_dim, dtype=restored.spec.dtype)
    return network

  @property
  def max_frames(self) -> int:
    return self.spec.data.max_frames

  @property
  def feature_dim(self) -> int:
    return self.spec.data.feature_dim

  @property
  def frames_seen(self) -> int:
    return self.forward.frames_seen(self.max_frames)

  @functools.cached_property
  def _probabilities(self):
    def fn(variables, frames_u8, num_frames, rng, preselected):
      return self.forward.apply(variables, frames_u8, num_frames, rng, preselected=preselected).probabilities
    return jax.jit(fn, static_argnums=(4,))

  def probabilities(self, frames_u8, num_frames, *, batch_index: int = 0, preselected: bool = False
                    ) -> jax.Array:
    """f32[B, C] class probabilities of uint8 frames [B, T, D] (or the preselected [B, k, D]); jitted."""
    return self._probabilities(self.variables, frames_u8, num_frames, eval_key(batch_index), preselected)


def cast_for_inference(forward: Forward, variables: Dict[str, Any], *, max_frames: int, feature_dim: int,
                       dtype: Any) -> Dict[str, Any]:
  """`variables` with every leaf that the eval forward only ever uses cast to `dtype` stored in `dtype`.

  With `dtype=bfloat16` the parameters stay float32 and each matmul casts its kernel on every
  call: for a student at batch 256 that cast reads and writes more bytes than its matmuls (NeXtVLAD's
  hidden kernel is 36,864 x 2,048). Casting once, before serving, gives bit-identical outputs, since
  the forward would compute exactly the same casts. Which leaves qualify is read from the traced forward
  (every use is a `convert_element_type` to `dtype`), so batch-norm statistics, VLAD centres and
  anything used in float32 stay float32. A float32 `dtype` returns `variables` unchanged.
  """
  dtype = jnp.dtype(dtype)
  if dtype == jnp.float32:
    return variables
  x = jax.ShapeDtypeStruct((1, max_frames, feature_dim), jnp.uint8)
  n = jax.ShapeDtypeStruct((1,), jnp.int32)
  closed = jax.make_jaxpr(lambda v, x, n: forward.apply(v, x, n).probabilities)(variables, x, n)
  leaves, treedef = jax.tree.flatten(variables)
  param_vars = closed.jaxpr.invars[:len(leaves)]
  castable = {id(v): True for v in param_vars}
  for eqn in closed.jaxpr.eqns:
    for v in eqn.invars:
      if id(v) in castable and not (eqn.primitive.name == "convert_element_type"
                                    and jnp.dtype(eqn.params["new_dtype"]) == dtype):
        castable[id(v)] = False
  for v in closed.jaxpr.outvars:
    if id(v) in castable:
      castable[id(v)] = False
  return jax.tree.unflatten(treedef, [jnp.asarray(x, dtype) if castable[id(v)] else x
                                      for x, v in zip(leaves, param_vars)])
