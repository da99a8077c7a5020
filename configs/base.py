"""Shared defaults for every experiment config. Every default lives here.

An experiment config (e.g. `configs/nextvlad_k10.py`) calls `get_config()` from this module and
changes only what its experiment changes. Each value that comes from the paper or an anchor code
base names its source in a comment:
  [PDF]  the CVPR'19 paper;  [CODE] its TF1 code (H-LSTM only);
  [W]    WILLOW's NetVLAD code;  [L] Lin et al.'s NeXtVLAD code;  [G] the YouTube-8M starter code.

Sections:
  data     : input files and their schema (see `fewframes_jax/data/yt8m.py`).
  teacher  : the model that sees every frame.
  student  : the model that sees k frames (`student.k`, `student.sampling`).
  loss     : weights of the student's loss terms (the teacher's loss is always CE only).
  optim    : optimizer of each network.
  train    : loop lengths, logging, checkpointing.
"""
import ml_collections
from ml_collections import config_dict


def model_config(name: str = "nextvlad") -> ml_collections.ConfigDict:
  """Architecture config of one network, at the paper's sizes, for every family.

  `name` picks the family; only that family's sub-dict is read by `models.build_model`.
  """
  m = ml_collections.ConfigDict()
  m.name = name  # one of: hrnn | lstm | gru | netvlad | nextvlad
  # Per-frame input normalisation: 'l2' (joint L2 over the 1152-d frame, as [G]/[W]/[CODE]),
  # 'none', or 'reverse_whitening' ([L]; needs `whitening_eigenvalues`, a .npy of PCA eigenvalues).
  # None means the family's default: l2 for hrnn/lstm/gru/netvlad; none for nextvlad, because [L]'s
  # eigenvalue file is not shipped with the data (documented deviation; see models/common.py).
  m.input_norm = None
  m.whitening_eigenvalues = ""

  m.hrnn = ml_collections.ConfigDict()
  m.hrnn.num_blocks = 20       # [CODE] num_inputs_to_lstm=20: 300 frames -> 20 blocks x 15 frames
  m.hrnn.cells = 1024          # [PDF §5.2] 2-layer MultiLSTM, 1024 cells each
  m.hrnn.layers = 2
  m.hrnn.unroll = 1            # scan unrolling (performance knob)
  m.hrnn.moe_mixtures = 2      # [CODE] MoeModel, 2 experts + dummy

  m.rnn = ml_collections.ConfigDict()   # plain LSTM/GRU over frames ([G] LstmModel)
  m.rnn.cells = 1024
  m.rnn.layers = 2
  m.rnn.unroll = 1
  m.rnn.moe_mixtures = 2

  m.netvlad = ml_collections.ConfigDict()  # [W] NetVLADModelLF, reported run
  m.netvlad.cluster_size = 256       # [PDF §5.2], [W] --netvlad_cluster_size=256
  m.netvlad.hidden_size = 1024       # [W] --netvlad_hidden_size=1024
  m.netvlad.moe_mixtures = 2         # [W] moe_num_mixtures default
  m.netvlad.prob_gating = True       # [W] --moe_prob_gating=True
  m.netvlad.random_frames = False    # [W] re-samples 300 frames with replacement (train AND eval); off = masking
  m.netvlad.num_random_frames = 300  # [W] --iterations=300

  m.nextvlad = ml_collections.ConfigDict()  # [L] train_nextvlad_local.sh
  m.nextvlad.cluster_size = 128      # [L] --nextvlad_cluster_size=128
  m.nextvlad.hidden_size = 2048      # [L] --nextvlad_hidden_size=2048
  m.nextvlad.groups = 8              # [L] --groups=8
  m.nextvlad.expansion = 2           # [L] --expansion=2
  m.nextvlad.gating_reduction = 8    # [L] --gating_reduction=8
  m.nextvlad.dropout = 0.5           # [L] --drop_rate=0.5, [PDF §5.2]
  return m


# `sampling=judged` (a config argument): the learned scorer ranked by a frame judge of the labels, from the
# far-from-mean prior (sampling='learned', selector.train='labels', selector.prior='far_from_mean').
JUDGED = "judged"


def student_config(name: str, *, k: int, sampling: str = "uniform") -> ml_collections.ConfigDict:
  """A student's config: a `model_config` plus the frames it sees (and, for an any-k student, its
  budgets and early exit). sampling: a method of `student.sampling`, or `JUDGED`."""
  s = model_config(name)
  s.k = k
  judged = sampling == JUDGED
  sampling = "learned" if judged else sampling
  # 0: ceil(k / 6) blocks of the FINAL k, derived when the config is resolved (k=30 -> 5 blocks x 6
  # frames as [CODE]'s `num_inputs_L1=5`; `models.hrnn_student_blocks`); a positive value wins.
  s.hrnn.num_blocks = 0
  # uniform | stride_padded | random | first | middle | last | first_middle_last | coarse_to_fine
  # (fewframes_jax/sampling/rules.py) | feature_change | far_from_mean (sampling/content.py).
  # At eval the same method is used; 'random' then draws from a fixed eval seed, so eval is deterministic.
  s.sampling = sampling
  # Beyond the paper: one student for every budget k in [k_min, k] (fewframes_jax/train/student_loss.py); its frames at
  # budget k are the first k of the nested order `sampling` (coarse_to_fine | far_from_mean | learned: its
  # own rank-trained scorer, student.selector.*). Unset (None / ''): a fixed-k student, the paper's (and a
  # cached sweep cell's config hash is unchanged).
  s.k_min = config_dict.placeholder(int)             # set: an any-k student for every k in [k_min, k]
  s.budgets_per_step = 4         # budgets per train step: k_min, k, and budgets_per_step - 2 uniform ones
                                 # (the sandwich rule)
  s.budget = config_dict.placeholder(int)            # an any-k student's budget at eval/predict (None: k)
  # Early exit at eval/predict (fewframes_jax/exits/early_exit.py): '' off, or '<rule>:<threshold>' with rule
  # stable | confident | gate (the gate fitted by `python -m fewframes_jax.exits`).
  s.exit = ""
  s.exits = ""                   # exit points, e.g. '6,10,15,20,30' ('': those of 6, 10, 15, 20, 30 in [k_min, k])
  # Beyond the paper: a learned frame selector, for sampling='learned' (fewframes_jax/sampling/learned.py,
  # scorer_training.py); another sampling must leave these at their defaults.
  sel = s.selector = ml_collections.ConfigDict()
  sel.streams = "all"            # what the scorer reads: all | audio | rgb
  sel.train = "rank"             # rank (from the frozen teacher) | labels (from a frame judge of the labels;
                                 # no teacher) | end_to_end
  sel.hidden = 4                 # units of its per-frame linear projection
  sel.mlp = 16                   # units of its MLP on [z_t, z_t - video mean]
  sel.prior = "none"             # none | far_from_mean: a learned residual on the frame's distance to the
                                 # video's mean frame
  sel.frames_per_video = 16      # rank/labels: frames per video judged per step
  sel.weight = 1.0               # rank/labels: the ranking loss's weight in the student loss
  sel.sigma = 0.5                # end_to_end: perturbed top-k noise scale
  sel.samples = 8                # end_to_end: perturbed top-k noise draws
  if judged:  # the recommended frame choice (RESULTS.md, "which frames"): no teacher needed
    sel.train, sel.prior = "labels", "far_from_mean"
  return s


def get_config() -> ml_collections.ConfigDict:
  """Defaults: NeXtVLAD teacher, uniform k=10 student, serial-style loss, bundled data."""
  c = ml_collections.ConfigDict()
  # teacher | student_only | parallel | serial | finetune  (see fewframes_jax/train/trainer.py)
  c.mode = "parallel"
  c.seed = 0
  c.dtype = "float32"            # compute dtype: float32 | bfloat16 (params stay float32)
  c.share_classifier = True      # [PDF §4] the student uses the teacher's output layer
  c.teacher_workdir = ""         # serial mode: workdir of a trained teacher run (empty, and no teacher_workdirs:
                                 # the run trains its teacher first, in <workdir>/teacher; train/loop.py)
  c.teacher_workdirs = ""        # serial mode: comma-separated teacher runs, distilled as an ensemble
                                 # (averaged predictions; one L_rep projection per teacher)
  c.init_workdir = ""            # finetune mode: workdir of a trained student run

  # ---- data ----
  d = c.data = ml_collections.ConfigDict()
  d.train_pattern = ""           # empty: the bundled synthetic dataset (generated on first use)
  d.eval_pattern = ""
  # Or a prepared TFDS dataset of fewframes_jax/data/tfds_yt8m.py (docs/data_tfds.md), e.g.
  # 'yt8m_frame_level/2018': its two splits become train_pattern and eval_pattern (leave those empty),
  # its class count num_classes, its train split's size num_train_examples (when 0).
  d.tfds_name = ""
  d.tfds_data_dir = ""           # empty: TFDS's default ($TFDS_DATA_DIR or ~/tensorflow_datasets)
  d.tfds_train_split = "train"
  d.tfds_eval_split = "validation"
  d.num_classes = 4716           # [PDF]/[CODE]: the 2017 release (4716); 2018+ uses 3862
  d.max_frames = 300             # [G] max_frames=300
  d.feature_names = ("rgb", "audio")
  d.feature_sizes = (1024, 128)
  d.id_key = "auto"              # auto | video_id (2017) | id (2018+)
  # Stop when the id key seen and num_classes belong to different releases (2018+ `id` records with
  # 4716 classes, or 2017 `video_id` records with another count): the class count is then wrong.
  # False proceeds anyway (e.g. data of your own in the 2017 schema with another vocabulary).
  d.check_release = True
  d.batch_size = 80              # global train batch; [PDF §5.2] 80 for NetVLAD/NeXtVLAD, 256 for H-RNN
  d.eval_batch_size = 256
  d.on_error = "raise"           # raise | skip (skips are counted and reported)
  d.shuffle_buffer = 2048
  d.train_fraction = 1.0         # [PDF Table 2]: fraction of training files/records used (0 < f <= 1)
  d.max_eval_videos = 0          # 0: the whole eval set
  d.num_train_examples = 0       # for train.num_epochs; 0: the bundled count (set it for real data)
  # Bundled dataset (used when train_pattern is empty). Its class count overrides num_classes.
  d.bundled = ml_collections.ConfigDict()
  d.bundled.cache_dir = ""       # empty: $FEWFRAMES_CACHE or ~/.cache/fewframes_jax
  d.bundled.num_train = 4000
  d.bundled.num_eval = 1000
  d.bundled.num_classes = 64
  d.bundled.seed = 0
  d.bundled.spec = ""            # empty: the short videos; "long": YouTube-8M-length (see `:long` below);
                                 # "realistic": long videos with intros, fades, events (`:realistic`)

  # ---- models ----
  c.teacher = model_config("nextvlad")
  c.student = student_config("nextvlad", k=10)

  # ---- student loss: sum of w_i * term_i ----
  lo = c.loss = ml_collections.ConfigDict()
  lo.ce = 1.0                    # L_CE, eq. 1: summed over classes, mean over batch ([G] convention)
  lo.rep = 1.0                   # L_rep, eq. 2: squared L2, summed over dims, mean over batch
  lo.rep_intermediate = 0.0      # L_rep^I, eq. 3 (H-RNN/LSTM only)
  lo.pred = 1.0                  # L_pred, eq. 4
  lo.pred_distance = "mse"       # mse | binary_kl | categorical_kl ([CODE] uses categorical_kl)

  # ---- optimizer (one per trained network) ----
  o = c.optim = ml_collections.ConfigDict()
  o.learning_rate = 0.0002       # [PDF §5.2] NetVLAD/NeXtVLAD; H-RNN 0.001
  o.decay_rate = 0.8             # [PDF §5.2] 0.8 (NetVLAD/NeXtVLAD), 0.95 (H-RNN)
  o.decay_examples = 2_000_000   # [L] 2M (NeXtVLAD); [W] 4M (NetVLAD); staircase, counted in examples
  o.clip_norm = 1.0              # [CODE]/[G]/[W]/[L] clip_gradient_norm=1.0
  # per_tensor: each gradient tensor clipped to norm 1.0 separately, as TF-slim's `clip_gradient_norms`
  # that [CODE]'s `create_train_op(clip_gradient_norm=1.0)` and [G]/[W]/[L] call; global ([MG], TF2)
  # clips by the global norm; none.
  o.clip_mode = "per_tensor"
  o.l2 = 1e-5                    # [L] --l2_penalty=1e-5 (on classifier weights; see fewframes_jax/train/optim.py)
  o.b1 = 0.9
  o.b2 = 0.999
  o.eps = 1e-8

  # ---- training loop ----
  t = c.train = ml_collections.ConfigDict()
  t.num_epochs = 5.0             # [PDF §5.2] 5 epochs for all models
  # Serial mode with no teacher run: the epochs of the teacher trained first (None: num_epochs, which the
  # student then trains; train/loop.py).
  t.teacher_stage_epochs = config_dict.placeholder(float)
  t.num_steps = 0                # >0 overrides num_epochs
  t.log_every = 50
  t.eval_every = 0               # 0: evaluate at the end only
  t.checkpoint_every = 500
  t.keep_checkpoints = 3
  t.progress_bar = True
  return c


def parse_arg(arg, **defaults) -> ml_collections.ConfigDict:
  """Parses a config argument 'k=10,mode=serial,cpu' (big_vision style) against typed defaults.

  A bare word sets a boolean default to True. Unknown keys are an error that lists the known ones.
  """
  parsed = ml_collections.ConfigDict(defaults)
  for item in filter(None, (arg or "").split(",")):
    key, _, value = item.partition("=")
    if key not in defaults:
      raise ValueError(f"unknown config argument {key!r}; known: {sorted(defaults)}")
    default = defaults[key]
    if not _:
      if not isinstance(default, bool):
        raise ValueError(f"config argument {key!r} needs a value ({key}=...)")
      parsed[key] = True
    elif isinstance(default, bool):
      parsed[key] = value.lower() in ("1", "true", "yes")
    else:
      parsed[key] = type(default)(value)
  return parsed


def apply_size(c: ml_collections.ConfigDict, size: str) -> ml_collections.ConfigDict:
  """Shrinks the models explicitly. 'paper' keeps the paper's sizes (a GPU job). 'cpu' is the README's
  2-core CPU run on the bundled data. 'tiny' is for tests (seconds per step on a CPU)."""
  if size == "paper":
    return c
  if size not in ("cpu", "tiny"):
    raise ValueError(f"size={size!r}: expected paper, cpu or tiny")
  cpu = size == "cpu"
  for m in (c.teacher, c.student):
    m.hrnn.cells = 128 if cpu else 16
    m.rnn.cells = 128 if cpu else 16
    m.netvlad.cluster_size = 16 if cpu else 4
    m.netvlad.hidden_size = 256 if cpu else 16
    m.nextvlad.cluster_size = 16 if cpu else 4
    m.nextvlad.hidden_size = 256 if cpu else 16
    m.nextvlad.groups = 4 if cpu else 2
    m.nextvlad.expansion = 1 if cpu else 1
  c.data.batch_size = 64 if cpu else 8
  c.data.eval_batch_size = 128 if cpu else 16
  if cpu:
    # A short CPU run (3 epochs of the 4,000 bundled training videos, ~190 steps) needs a larger step
    # than the paper's (`CPU_LEARNING_RATE`).
    c.optim.learning_rate = max(c.optim.learning_rate, CPU_LEARNING_RATE.get(c.teacher.name, 1e-3))
    c.train.num_epochs = CPU_EPOCHS
  if not cpu:
    c.data.bundled.num_train = 64
    c.data.bundled.num_eval = 24
    c.data.bundled.num_classes = 8
    c.data.shuffle_buffer = 64
    c.train.num_steps = 4
    c.train.log_every = 2
    c.train.checkpoint_every = 2
    c.train.progress_bar = False
  return c


# The smallest learning rate of a `cpu`-size run, by the teacher's family. The paper's 2e-4 for NetVLAD and
# NeXtVLAD is for millions of examples; at 1e-3 a NeXtVLAD teacher and its k=10 serial student were both
# still far from converged after the run's ~190 steps (training CE falling steeply at the end: teacher 0.806
# GAP, student 0.689); at 3e-3 the teacher reached 0.894 and a student of the 1e-3 teacher 0.803 (2e-3:
# teacher 0.885). H-RNN's paper value is 1e-3.
CPU_LEARNING_RATE = {"netvlad": 3e-3, "nextvlad": 3e-3}
CPU_EPOCHS = 3
# A serial student at the `cpu` size trains twice the teacher's epochs: its step (its k frames, the frozen
# teacher's forward) costs about half the teacher's, so its stage takes about the teacher's time. At the
# teacher's 3 epochs a NeXtVLAD k=10 student was still far from converged (0.81-0.82 GAP, training CE
# falling steeply; its teacher 0.885-0.894); at 6 epochs it reached 0.910-0.911.
CPU_SERIAL_STUDENT_EPOCHS = 6


# Per-family training hyper-parameters, each with its source.
FAMILY_OPTIM = {
    # [PDF §5.2] lr 0.001, decay 0.95 (period not given: [CODE]'s flag default of 4M examples), batch 256;
    # [CODE] clips each gradient tensor to norm 1.0 (slim's create_train_op) and regularises the MoE's
    # gate and expert kernels with l2 1e-8 x penalty 2.
    "hrnn": dict(learning_rate=0.001, decay_rate=0.95, decay_examples=4_000_000, clip_mode="per_tensor",
                 l2=2e-8, batch_size=256),
    # [G] LstmModel docs: lr 0.001; the rest as H-RNN.
    "lstm": dict(learning_rate=0.001, decay_rate=0.95, decay_examples=4_000_000, clip_mode="per_tensor",
                 l2=2e-8, batch_size=256),
    "gru": dict(learning_rate=0.001, decay_rate=0.95, decay_examples=4_000_000, clip_mode="per_tensor",
                l2=2e-8, batch_size=256),
    # [PDF §5.2] lr 0.0002, decay 0.8, batch 80; [W] decay every 4M examples, moe_l2 1e-6, per-tensor clip 1.0.
    "netvlad": dict(learning_rate=0.0002, decay_rate=0.8, decay_examples=4_000_000, clip_mode="per_tensor",
                    l2=1e-6, batch_size=80),
    # [PDF §5.2] lr 0.0002, decay 0.8, batch 80; [L] decay every 2M examples, l2 1e-5, per-tensor clip 1.0.
    "nextvlad": dict(learning_rate=0.0002, decay_rate=0.8, decay_examples=2_000_000, clip_mode="per_tensor",
                     l2=1e-5, batch_size=80),
}

# Student loss weights per family. [PDF §4]: plain sums (1, 1, 1). For NetVLAD/NeXtVLAD the
# representation is a 1024/2048-d gated activation whose squared distance dwarfs CE early on; the
# unofficial NeXtVLAD port needed `CE + 0.01 L_pred + 0.001 L_rep` (sum-reduced). We keep L_pred at 1
# (our terms are batch means) and scale L_rep by 0.01 for the VLAD families.
FAMILY_LOSS = {
    "hrnn": dict(ce=1.0, rep=1.0, pred=1.0), "lstm": dict(ce=1.0, rep=1.0, pred=1.0),
    "gru": dict(ce=1.0, rep=1.0, pred=1.0),
    "netvlad": dict(ce=1.0, rep=0.01, pred=1.0), "nextvlad": dict(ce=1.0, rep=0.01, pred=1.0),
}


def experiment_args(family: str, *, k: int, arg=None, student_family: str = "") -> ml_collections.ConfigDict:
  """`experiment`'s argument, parsed against its defaults."""
  return parse_arg(arg, k=k, mode="parallel", sampling="uniform", cpu=False, tiny=False, long=False,
                   realistic=False, student=student_family or family, pred_distance="mse", k_min=0)


def experiment(family: str, *, k: int, arg=None, student_family: str = "") -> ml_collections.ConfigDict:
  """A full experiment config for a teacher `family` and a k-frame student.

  `arg` (after the colon of --config): k=<int>, mode=<mode>, sampling=<method> (or `judged`: the
  recommended learned selector, `JUDGED`), k_min=<int> (an any-k student for every budget in [k_min, k];
  sampling then a nested order, e.g. coarse_to_fine), and the bare words
  `cpu` (the README's CPU run: smaller models, see `apply_size`), `tiny` (tests) and `long` (the bundled
  YouTube-8M-length videos instead of the short ones: 1,800 training and 400 eval videos of 120-300
  frames, about 0.6 GB, generated on first use; every network sees up to 300 frames) and `realistic`
  (as `long`, with the structure of real uploads: label-free intros, outros, black frames, title cards
  and cut-aways, sustained labels beside short events, graded difficulty; docs/realistic_data.md).
  """
  a = experiment_args(family, k=k, arg=arg, student_family=student_family)
  if a.long and a.realistic:
    raise ValueError("config arguments long and realistic name two bundled splits: give one")
  c = get_config()
  c.mode = a.mode
  c.teacher = model_config(family)
  c.student = student_config(a.student, k=a.k, sampling=a.sampling)
  if a.k_min:
    c.student.k_min = a.k_min
  opt = dict(FAMILY_OPTIM[family])
  c.data.batch_size = opt.pop("batch_size")
  c.optim.update(opt)
  c.loss.update(FAMILY_LOSS[a.student])
  c.loss.pred_distance = a.pred_distance
  if a.student != family:
    c.share_classifier = False  # cross-family: representation sizes differ
  if a.long or a.realistic:
    c.data.bundled.spec = "long" if a.long else "realistic"
    c.data.bundled.num_train, c.data.bundled.num_eval = LONG_TRAIN_VIDEOS, LONG_EVAL_VIDEOS
  return apply_size(c, "tiny" if a.tiny else "cpu" if a.cpu else "paper")


# The best student recipe of RESULTS.md's Table 1 on the bundled data (the paper's row Serial L_pred + L_CE;
# the paper's own best row adds L_rep): the student learns from the labels and the frozen teacher's
# predictions only.
SERIAL_PRED_CE = dict(ce=1.0, rep=0.0, rep_intermediate=0.0, pred=1.0)


def headline(family: str, *, k: int, arg=None) -> ml_collections.ConfigDict:
  """The README-level experiment of a family: `experiment` in serial mode with `SERIAL_PRED_CE` by default.

  Serial (the default): with no `teacher_workdir` the run trains its teacher first, alone, in
  `<workdir>/teacher` (skipped when it is trained there, resumed when it was interrupted), then the k-frame
  student against it, frozen, with L_CE + L_pred (`fewframes_jax/train/loop.py`); at the `cpu` size the
  student trains twice the teacher's epochs (`CPU_SERIAL_STUDENT_EPOCHS`);
  `--config.teacher_workdir=<run>` distills a teacher trained before. The paper's own best row adds L_rep
  (`--config.loss.rep=<the family's FAMILY_LOSS weight>`). `arg` takes `experiment`'s arguments; a
  `mode=<mode>` gives that mode with the family's loss weights (`FAMILY_LOSS`):
    mode=parallel                        teacher and student trained together, in one run;
    mode=teacher                         the teacher alone (Teacher-Skyline);
    mode=student_only,sampling=random    a k-frame baseline (the student alone, labels only);
    mode=finetune                        the paper's stage 2 (CE only), with --config.init_workdir=<student run>.
  """
  arg = "mode=serial," + (arg or "")  # a later `mode=` in `arg` wins
  c = experiment(family, k=k, arg=arg)
  if c.mode == "serial":
    c.loss.update(SERIAL_PRED_CE)
    a = experiment_args(family, k=k, arg=arg)
    if a.cpu and not a.tiny:
      c.train.teacher_stage_epochs, c.train.num_epochs = CPU_EPOCHS, CPU_SERIAL_STUDENT_EPOCHS
  return c


# The `long` and `realistic` bundled splits: 2,200 videos of about 230 frames (1,152 bytes each) are 0.59 GB.
LONG_TRAIN_VIDEOS = 1800
LONG_EVAL_VIDEOS = 400
