"""The `realistic` bundled split: YouTube-8M-length videos with the structure of real uploads.

`synthetic.py` writes the files; this module draws what a video of the `realistic` spec shows (its
`video_plan.VideoPlan`) and its frames. docs/realistic_data.md says the same with the measured values.

What it adds to the `long` split (120-500 s at one frame per second, stored up to 300 frames), and why we
believe real YouTube-8M videos have it (public facts: frames at 1 per second of 120-300 s videos; rgb is an
Inception-v3 activation and audio a VGG-like embedding, both PCA-whitened and quantized to one byte in
[-2, 2]; the 2017 labels are Knowledge Graph entities, 3.4 per video on average, the most frequent ones
topics such as Game, Vehicle, Car, Concert, Football, Cartoon):

* **Label-free distinctive segments**, shared by all classes (`VideoPlan.label_free`, one kind per frame,
  `KINDS`): a channel's intro (2-8 frames at the start) and outro or end screen (5-20 frames at the end),
  drawn from `num_channels` recurring channel templates, a video's channel independent of its labels (a
  channel uploads videos of many topics; YouTube's end screens are 5-20 s); black frames at the start and
  the end and partial fades to black at cuts (dips to black, the identical black image of every video);
  title cards (text on a plain background, a few shared styles); cut-aways to generic content (crowd, sky,
  a talking head; a shared pool of scenes, not of any class). The paper's own Table 1 hints at this: its
  First-k baseline (the first k seconds) is 0.24 GAP below Uniform-k at k = 6 although a video's topic is
  visible throughout. These frames carry no label evidence, and intros, outros, black frames and title
  cards are synthetic images unlike natural footage, so they are farther from the video's mean feature (rgb
  and audio) than the label evidence is: the rule "the frames farthest from the mean" picks them first.
* **Sustained and event labels.** Most YouTube-8M labels are topics visible most of the time (a video
  labelled Car shows cars in most shots). `event_class_every`: classes c with c % 4 == 1 are *event*
  classes, shown in 1-4 short events of 2-8 frames each (goals, jumps, explosions) with strong per-frame
  evidence; the others are *sustained*: present in 50-95% of the video's content frames, whole shots at a
  time, weaker per frame. With the default Zipf frequencies 24% of the labels are events, 76% sustained.
  Every content frame also shows *unlabelled appearances* along every class direction (rgb; per shot and
  per frame, `class_noise`), so one frame's evidence is unreliable.
* **Graded difficulty.** Evidence strength = a base (sustained or event) x a class strength (log-uniform
  in `class_strength`, fixed per class) x a video strength (log-uniform in `video_strength`, per video) x
  a per-label and a per-frame jitter. A strong sustained label is read off a few frames; a weak one needs
  the mean of many (the per-frame noise along a class direction is larger than its evidence), so an
  all-frame model beats a k-frame one on it, and an early exit has easy and hard videos to tell apart.
* **Shots and editing.** A video is a sequence of shots (log-uniform 2-20 s), each with its own offset;
  frames of a shot share it. Sustained evidence switches on and off at shot boundaries. `edited_fraction`
  of the videos are edited: fades, title cards and cut-aways sit at their cuts; the others (one take: a
  vlog, gameplay, a concert) have none of them.
* **Calibrated feature statistics.** Per-dimension scales follow the real video-level features
  (../shared/data/yt8m_video_level: the per-dimension std of mean_rgb falls from 0.74 on the first PCA
  dimensions to 0.43 on the last, of mean_audio from 0.85 to 0.65; `_PROFILES`). A video's offset from the
  dataset mean is large (real mean_rgb has a median norm of 12.8) but lies mostly in a *nuisance*
  subspace (scene, lighting, camera, the channel's look) orthogonal to the class directions; along a class
  direction only a small offset remains (`video_style`). Values are clipped and quantized as the real
  bytes are (`quantization.quantize`).

Features of frame t, per stream, before the per-dimension profile r: a content frame is
`style + nuisance + shot_offset[shot(t)] + noise * e_t`, then `r * (.) + sum_j amplitude[j, t] * w * p_j`
(p_j the class's unit direction, w 1 for rgb and the class's `audio_weight` for audio) plus, in rgb, the
unlabelled appearances `sum_c n[t, c] p_c`; a label-free frame
is its template plus a little noise (intro, outro, title: the template's own; a fade: alpha x black +
(1 - alpha) x the content frame; a cut-away: a generic scene plus content-like noise). The audio of a title
card or cut-away is the video's own audio without label evidence (music or voice-over continues).

Measured (2,000 plans, 300 videos; docs/realistic_data.md): 7.8% of all frames are label-free (18 per
video); a quarter of the labels are events; the 10 frames farthest from a video's mean are 77% label-free.

What is not realistic (docs/realistic_data.md): Gaussian features in a linear model of evidence; 64
classes, not 4716; class directions orthogonal to the nuisance subspace by construction; no label
co-occurrence structure; events of one label alike; no motion or temporal smoothness within a shot beyond
the shared offset; label-free kinds and their rates are our estimates, not measured on YouTube-8M.
"""
import dataclasses
import functools
import math
from typing import NamedTuple, Tuple

import numpy as np

from fewframes_jax.data import quantization
from fewframes_jax.data.video_plan import Video, VideoPlan, class_probabilities, log_uniform_int

# Bump when the bytes a (spec, seed) produces change: the realistic split's bundled folder is keyed by it
# (beside `synthetic.GENERATOR_VERSION`, which keys every split).
VERSION = 1
# Kinds of frame in `VideoPlan.label_free` (0: content, which may carry label evidence).
KINDS = ("content", "intro", "outro", "black", "title", "cutaway")
CONTENT, INTRO, OUTRO, BLACK, TITLE, CUTAWAY = range(len(KINDS))
_WORLD_STREAM = 3  # rng stream of the shared templates (synthetic's prototypes use stream 0)
# Per-dimension std of the real video-level features at the centres of PCA-dimension bins (measured on the
# 957 records of ../shared/data/yt8m_video_level): (dimension, std) for rgb, then audio.
_PROFILES = (((3.5, 19.5, 79.5, 191.5, 383.5, 767.5), (0.740, 0.655, 0.548, 0.491, 0.462, 0.434)),
             ((3.5, 19.5, 79.5), (0.851, 0.769, 0.651)))


@dataclasses.dataclass(frozen=True)
class RealisticSpec:
  """Everything that shapes the realistic split (besides the seed and the number of videos).

  Pairs `(rgb, audio)` are per stream; feature scales are per-dimension stds before the real per-dimension
  profile (whose mean square is 1); `(lo, hi)` ranges are uniform unless said otherwise.
  """
  num_classes: int = 64
  rgb_size: int = 1024
  audio_size: int = 128
  zipf_exponent: float = 0.8
  # P(1 label), ..., P(8 labels): the real 2017/2018 validate records (8 holds 8 or more); mean 3.2.
  label_count_probs: Tuple[float, ...] = (0.235, 0.202, 0.167, 0.159, 0.103, 0.051, 0.042, 0.041)
  video_frames: Tuple[int, int] = (120, 500)   # log-uniform length at 1 frame/s
  max_stored_frames: int = 300
  event_class_every: int = 4                   # classes c with c % event_class_every == 1 are events
  # Difficulty: evidence strength = signal x class strength x video strength x jitter.
  sustained_signal: float = 4.0
  event_signal: float = 8.0
  class_strength: Tuple[float, float] = (0.6, 1.6)   # log-uniform, per class
  video_strength: Tuple[float, float] = (0.4, 2.5)   # log-uniform, per video
  audio_weight: Tuple[float, float] = (0.3, 1.2)     # per class: audio evidence / rgb evidence
  sustained_coverage: Tuple[float, float] = (0.5, 0.95)  # share of the content frames, whole shots
  event_frames: Tuple[int, int] = (2, 8)
  events_per_video: Tuple[int, int] = (1, 4)   # uniform: a label's events in one video
  # Content.
  shot_frames: Tuple[int, int] = (2, 20)       # log-uniform
  video_style: Tuple[float, float] = (0.12, 0.12)  # the video's offset, every direction
  nuisance: Tuple[float, float] = (0.4, 0.6)        # ... in the nuisance subspace (per-dimension equivalent)
  nuisance_rank: Tuple[int, int] = (128, 32)
  shot: Tuple[float, float] = (0.3, 0.3)
  noise: Tuple[float, float] = (0.4, 0.4)
  # Unlabelled appearances along every class direction of rgb, on content frames (a car passing in a cooking
  # video; a per-frame classifier's spurious scores): std per shot, then per frame. They make one frame's evidence
  # unreliable, so that a weak sustained label needs many shots.
  class_noise: Tuple[float, float] = (1.5, 0.8)
  # Label-free segments.
  num_channels: int = 12
  channel_fraction: float = 0.6                # videos from one of the recurring channels
  channel_style: float = 0.3                   # a channel's look, in the nuisance subspace
  intro_prob: float = 0.7                      # of a channel's video
  intro_frames: Tuple[int, int] = (2, 8)
  outro_prob: float = 0.7
  outro_frames: Tuple[int, int] = (5, 20)
  template_scale: float = 0.7                  # intros, outros, title cards
  template_noise: float = 0.1
  black_prob: float = 0.5                      # at the start, and (separately) at the end
  black_frames: Tuple[int, int] = (1, 3)
  black_scale: float = 0.8
  black_noise: float = 0.02
  edited_fraction: float = 0.6                 # edited videos have fades, title cards and cut-aways; the others
                                               # (one take: a vlog, gameplay, a concert) none of them
  fade_prob: float = 0.15                      # per cut of an edited video: a dip to black of 1-2 frames
  fade_alpha: Tuple[float, float] = (0.6, 1.0)
  title_prob: float = 0.35
  title_frames: Tuple[int, int] = (2, 6)
  num_titles: int = 4
  title_noise: float = 0.15
  max_cutaways: int = 3                        # 0..max per video
  cutaway_frames: Tuple[int, int] = (2, 8)
  num_generic: int = 16
  generic_scale: float = 0.6

  def __post_init__(self):
    if self.num_classes < 1:
      raise ValueError(f"num_classes must be >= 1, got {self.num_classes}")
    if abs(sum(self.label_count_probs) - 1.0) > 1e-6:
      raise ValueError(f"label_count_probs must sum to 1, got {self.label_count_probs}")

  @property
  def feature_sizes(self) -> Tuple[int, int]:
    return (self.rgb_size, self.audio_size)


class World(NamedTuple):
  """What every video of a (spec, seed) shares; each stream field is a pair (rgb, audio).

  profile: f32[D] per-dimension scale (mean square 1); nuisance: f32[D, R] orthonormal columns;
  prototypes: f32[C, D] unit class directions, orthogonal to the nuisance subspace; class_strength,
  audio_weight: f32[C]; intros, outros: f32[num_channels, D]; channel_styles: f32[num_channels, D];
  black: f32[D]; titles: f32[num_titles, D]; generic: f32[num_generic, D].
  """
  profile: Tuple[np.ndarray, np.ndarray]
  nuisance: Tuple[np.ndarray, np.ndarray]
  prototypes: Tuple[np.ndarray, np.ndarray]
  class_strength: np.ndarray
  audio_weight: np.ndarray
  intros: Tuple[np.ndarray, np.ndarray]
  outros: Tuple[np.ndarray, np.ndarray]
  channel_styles: Tuple[np.ndarray, np.ndarray]
  black: Tuple[np.ndarray, np.ndarray]
  titles: Tuple[np.ndarray, np.ndarray]
  generic: Tuple[np.ndarray, np.ndarray]


def is_event_class(spec: RealisticSpec) -> np.ndarray:
  """bool[C]: the classes shown in a few short events; the others are sustained."""
  return np.arange(spec.num_classes) % spec.event_class_every == 1


def _profile(stream: int, size: int) -> np.ndarray:
  centres, stds = _PROFILES[stream]
  r = np.interp(np.log1p(np.arange(size)), np.log1p(centres), stds)
  return (r / np.sqrt(np.mean(r ** 2))).astype(np.float32)


def _log_uniform(rng, lo: float, hi: float, size=None):
  return np.exp(rng.uniform(math.log(lo), math.log(hi), size=size))


@functools.lru_cache(maxsize=8)
def world(spec: RealisticSpec, seed: int) -> World:
  """The shared directions and templates of (spec, seed) (the same for train and eval)."""
  rng = np.random.default_rng([seed, _WORLD_STREAM])
  fields = {name: [] for name in ("profile", "nuisance", "prototypes", "intros", "outros", "channel_styles",
                                  "black", "titles", "generic")}
  for stream, (size, rank) in enumerate(zip(spec.feature_sizes, spec.nuisance_rank)):
    q, _ = np.linalg.qr(rng.standard_normal((size, min(rank, size - 1))))
    p = rng.standard_normal((spec.num_classes, size))
    p -= (p @ q) @ q.T  # class directions outside the nuisance subspace
    fields["profile"].append(_profile(stream, size))
    fields["nuisance"].append(q.astype(np.float32))
    fields["prototypes"].append((p / np.linalg.norm(p, axis=1, keepdims=True)).astype(np.float32))
    normal = lambda *shape: rng.standard_normal(shape).astype(np.float32)  # pylint: disable=cell-var-from-loop
    fields["intros"].append(spec.template_scale * normal(spec.num_channels, size))
    fields["outros"].append(spec.template_scale * normal(spec.num_channels, size))
    scale = spec.channel_style * math.sqrt(size / q.shape[1])  # per-dimension equivalent std
    fields["channel_styles"].append((scale * normal(spec.num_channels, q.shape[1]) @ q.T).astype(np.float32))
    fields["black"].append(spec.black_scale * normal(size))
    fields["titles"].append(spec.template_scale * normal(spec.num_titles, size))
    fields["generic"].append(spec.generic_scale * normal(spec.num_generic, size))
  class_strength = _log_uniform(rng, *spec.class_strength, size=spec.num_classes).astype(np.float32)
  audio_weight = rng.uniform(*spec.audio_weight, size=spec.num_classes).astype(np.float32)
  return World(class_strength=class_strength, audio_weight=audio_weight,
               **{name: tuple(value) for name, value in fields.items()})


class _Layout(NamedTuple):
  """A video's plan and what drawing its frames needs besides: shot: i32[L] shot of each frame; alpha:
  f32[L] a black frame's share of black (1: black, < 1: a fade); template: i32[L] the title or generic
  scene of a title or cut-away frame."""
  plan: VideoPlan
  shot: np.ndarray
  alpha: np.ndarray
  template: np.ndarray


def _randint(rng, lo: int, hi: int) -> int:
  return int(rng.integers(lo, hi + 1))


def _shots(rng, length: int, spec: RealisticSpec) -> np.ndarray:
  """i32[L]: the shot index of each frame (shots of log-uniform length)."""
  bounds, t = [], 0
  while t < length:
    bounds.append(t)
    t += log_uniform_int(rng, *spec.shot_frames)
  shot = np.zeros(length, np.int32)
  shot[np.array(bounds[1:], np.int64)] = 1
  return np.cumsum(shot).astype(np.int32)


def _draw_layout(rng: np.random.Generator, spec: RealisticSpec, shared: World) -> _Layout:
  length = min(log_uniform_int(rng, *spec.video_frames), spec.max_stored_frames)
  num_labels = min(spec.num_classes, 1 + int(rng.choice(len(spec.label_count_probs), p=spec.label_count_probs)))
  labels = np.sort(rng.choice(spec.num_classes, size=num_labels, replace=False,
                              p=class_probabilities(spec)))
  kind = np.zeros(length, np.int8)
  alpha = np.zeros(length, np.float32)
  template = np.full(length, -1, np.int32)
  channel = int(rng.integers(spec.num_channels)) if rng.uniform() < spec.channel_fraction else -1
  # The start: [black][intro][title]; the end: [outro][black].
  start, end = 0, length
  if rng.uniform() < spec.black_prob:
    n = _randint(rng, *spec.black_frames)
    kind[:n], alpha[:n], start = BLACK, 1.0, n
  if channel >= 0 and rng.uniform() < spec.intro_prob:
    n = _randint(rng, *spec.intro_frames)
    kind[start:start + n], start = INTRO, start + n
  if rng.uniform() < spec.black_prob:
    n = _randint(rng, *spec.black_frames)
    kind[end - n:], alpha[end - n:], end = BLACK, 1.0, end - n
  if channel >= 0 and rng.uniform() < spec.outro_prob:
    n = _randint(rng, *spec.outro_frames)
    kind[end - n:end], end = OUTRO, end - n
  shot = _shots(rng, length, spec)
  cuts = np.flatnonzero(np.diff(shot)) + 1  # the first frame of each shot but the first
  cuts = cuts[(cuts > start + 1) & (cuts < end - 1)]
  if rng.uniform() >= spec.edited_fraction:
    cuts = cuts[:0]  # one take: no title card, cut-away or fade
  title_at_start = rng.uniform() < 0.5
  if cuts.size and rng.uniform() < spec.title_prob:
    n = _randint(rng, *spec.title_frames)
    at = start if title_at_start else int(rng.choice(cuts))
    kind[at:min(at + n, end)] = TITLE
    template[at:min(at + n, end)] = int(rng.integers(spec.num_titles))
  for _ in range(_randint(rng, 0, spec.max_cutaways)):
    if not cuts.size:
      break
    at, n = int(rng.choice(cuts)), _randint(rng, *spec.cutaway_frames)
    free = kind[at:min(at + n, end)] == CONTENT
    kind[at:at + free.size][free] = CUTAWAY
    template[at:at + free.size][free] = int(rng.integers(spec.num_generic))
  fades = rng.uniform(size=cuts.size) < spec.fade_prob
  for cut in cuts[fades]:
    n = _randint(rng, 1, 2)
    span = np.arange(cut - n, cut)
    span = span[kind[span] == CONTENT]
    kind[span] = BLACK
    alpha[span] = rng.uniform(*spec.fade_alpha, size=span.size)
  content = kind == CONTENT
  if not content.any():  # never in practice (label-free frames are a small share); keep one frame
    content[length // 2] = True
    kind[length // 2] = CONTENT
  events = is_event_class(spec)
  video_strength = _log_uniform(rng, *spec.video_strength)
  evidence = np.zeros((num_labels, length), bool)
  amplitude = np.zeros((num_labels, length), np.float32)
  for j, c in enumerate(labels):
    if events[c]:
      for _ in range(_randint(rng, *spec.events_per_video)):
        n = _randint(rng, *spec.event_frames)
        at = int(rng.choice(np.flatnonzero(content)))
        run = np.arange(at, min(at + n, length))
        evidence[j, run[content[run]]] = True
    else:
      target = rng.uniform(*spec.sustained_coverage) * content.sum()
      for s in rng.permutation(int(shot[-1]) + 1):
        if (evidence[j] & content).sum() >= target:
          break
        evidence[j] |= (shot == s) & content
      if not evidence[j].any():
        evidence[j, np.flatnonzero(content)[0]] = True
    base = spec.event_signal if events[c] else spec.sustained_signal
    strength = base * shared.class_strength[c] * video_strength * rng.uniform(0.8, 1.25)
    amplitude[j] = evidence[j] * strength * rng.uniform(0.8, 1.2, size=length)
  plan = VideoPlan(length=length, labels=labels.astype(np.int64), evidence=evidence,
                             amplitude=amplitude.astype(np.float32), label_free=kind, channel=channel)
  return _Layout(plan=plan, shot=shot, alpha=alpha, template=template)


def plan_video(spec: RealisticSpec, rng: np.random.Generator, seed: int) -> VideoPlan:
  """The plan of the video whose generator is `rng` (`synthetic.plan_video` calls it)."""
  return _draw_layout(rng, spec, world(spec, seed)).plan


def make_video(spec: RealisticSpec, rng: np.random.Generator, seed: int) -> Video:
  """The video whose generator is `rng` (`synthetic.make_video` calls it): its plan, then its frames."""
  shared = world(spec, seed)
  layout = _draw_layout(rng, spec, shared)
  plan, kind = layout.plan, layout.plan.label_free
  length = plan.length
  channel = max(plan.channel, 0)
  num_shots = int(layout.shot[-1]) + 1
  spurious = spec.class_noise[0] * rng.standard_normal((num_shots, spec.num_classes), dtype=np.float32)
  spurious = spurious[layout.shot] + spec.class_noise[1] * rng.standard_normal((length, spec.num_classes),
                                                                                 dtype=np.float32)
  spurious *= (kind == CONTENT)[:, None]  # [L, C]
  streams = []
  for stream, size in enumerate(spec.feature_sizes):
    q = shared.nuisance[stream]
    offset = spec.video_style[stream] * rng.standard_normal(size, dtype=np.float32)
    offset += (spec.nuisance[stream] * math.sqrt(size / q.shape[1])
               * rng.standard_normal(q.shape[1], dtype=np.float32)) @ q.T
    if plan.channel >= 0:
      offset += shared.channel_styles[stream][channel]
    shots = spec.shot[stream] * rng.standard_normal((num_shots, size), dtype=np.float32)
    content = offset + shots[layout.shot]                    # [L, D], before the per-frame noise
    noise = np.full(length, spec.noise[stream], np.float32)  # per-frame noise scale
    x = content.copy()
    audio = stream == 1
    for k, templates in ((INTRO, shared.intros), (OUTRO, shared.outros)):
      x[kind == k] = templates[stream][channel]
      noise[kind == k] = spec.template_noise
    black = kind == BLACK
    a = layout.alpha[black, None]
    x[black] = a * shared.black[stream] + (1 - a) * content[black]
    noise[black] = layout.alpha[black] * spec.black_noise + (1 - layout.alpha[black]) * spec.noise[stream]
    if not audio:  # a title card's or cut-away's audio is the video's own (music, voice-over)
      title, cutaway = kind == TITLE, kind == CUTAWAY
      x[title] = shared.titles[stream][layout.template[title]]
      noise[title] = spec.title_noise
      x[cutaway] = shared.generic[stream][layout.template[cutaway]]
    x += noise[:, None] * rng.standard_normal((length, size), dtype=np.float32)
    x *= shared.profile[stream]
    weight = shared.audio_weight if audio else np.ones(spec.num_classes, np.float32)
    x += (plan.amplitude * weight[plan.labels, None]).T @ shared.prototypes[stream][plan.labels]
    if not audio:  # unlabelled appearances are seen (objects in view), not heard
      x += spurious @ shared.prototypes[stream]
    streams.append(quantization.quantize(x))
  return Video(rgb=streams[0], audio=streams[1], plan=plan)
