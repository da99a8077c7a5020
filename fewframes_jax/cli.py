"""What every command line of the project shares: absl flags, a clean start, one line per user mistake.

  quiet_start()   before TensorFlow or JAX is imported: TensorFlow's C++ start-up lines (the oneDNN
                  notice, "All log messages before absl::InitializeLog() ...") stay hidden unless the
                  user sets TF_CPP_MIN_LOG_LEVEL=0 (`data/records.tensorflow()` hides what that level no
                  longer does in TensorFlow 2.21); absl logging (Orbax logs every step of a save
                  through it) is kept at WARNING unless `--verbosity` / `-v` is given.
  run(main)       `absl.app.run(main)`, where a flag that does not parse (`parse_flags`) or a user's mistake (`errors.UserError`: an invalid config
                  field, a bad record; `FileNotFoundError`: a pattern that matches no file, a workdir
                  without checkpoints; `absl.app.UsageError`) prints `error: <message>` on one line
                  and exits with status 2.
                  Any other exception is a bug and keeps its traceback.
  parse_flags     also points `--config=configs/<file>.py[:arg]` at the installed config files (the
                  package `fewframes_jax.configs`) when the working folder holds no such file: the
                  documented commands run from a clone and from an install alike.
  define_data_flags() / data_overrides()   the real-data flags every study command takes
                  (--train_pattern, --eval_pattern, --num_classes, --num_train_examples) and the
                  `config.data` overrides they give ({} for the bundled data).
"""
import importlib.util
import os
import sys
from typing import Callable, Dict, List, Optional, Sequence, Tuple

USER_ERROR_EXIT_CODE = 2
HELP_FLAGS = frozenset(("--help", "-h", "-?", "--helpshort", "--helpfull", "--helpxml"))


def quiet_start() -> None:
  """Hides TensorFlow's C++ start-up logging (call before TensorFlow is imported)."""
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def _quiet_logging(argv) -> None:
  from absl import flags, logging  # pylint: disable=g-import-not-at-top
  del argv
  if not flags.FLAGS["verbosity"].present:
    logging.set_verbosity(logging.WARNING)


def _fail(message: str) -> None:
  print(f"error: {message}", file=sys.stderr, flush=True)
  sys.exit(USER_ERROR_EXIT_CODE)


def _last_line(text: str) -> str:
  lines = [line.strip() for line in str(text).strip().splitlines() if line.strip()]
  return lines[-1] if lines else ""


CONFIG_FOLDER = "configs"  # the repository's folder of config files: the package `fewframes_jax.configs`


def installed_configs() -> Optional[str]:
  """The folder of the package `fewframes_jax.configs` (the repository's `configs/` in a clone, the
  installed copy otherwise), found without importing it; None when it is not installed."""
  spec = importlib.util.find_spec(f"fewframes_jax.{CONFIG_FOLDER}")
  if spec is None or not spec.submodule_search_locations:
    return None
  return list(spec.submodule_search_locations)[0]


def resolve_config_path(value: str) -> str:
  """A `--config` value `path[:arg]` as given when `path` exists; else, for `configs/<file>.py`, the
  installed config file of that name (`installed_configs`), the argument kept. A path that neither
  names is returned unchanged (config_flags then reports it)."""
  path, colon, arg = value.partition(":")
  parts = os.path.normpath(path).split(os.sep)
  if os.path.exists(path) or len(parts) < 2 or parts[0] != CONFIG_FOLDER:
    return value
  folder = installed_configs()
  candidate = os.path.join(folder, *parts[1:]) if folder else ""
  return candidate + colon + arg if candidate and os.path.isfile(candidate) else value


def resolve_config_args(argv: Sequence[str]) -> List[str]:
  """argv with the value of `--config=...` (or `--config ...`) passed through `resolve_config_path`."""
  out = list(argv)
  for i, arg in enumerate(out):
    if arg.startswith("--config="):
      out[i] = "--config=" + resolve_config_path(arg[len("--config="):])
    elif arg == "--config" and i + 1 < len(out):
      out[i + 1] = resolve_config_path(out[i + 1])
  return out


def parse_flags(argv):
  """absl's flag parsing, with every parsing error on one line: a config file whose `get_config(arg)`
  rejects its argument (config_flags embeds that traceback in its message: its last line is kept), an
  override of a config field that does not exist (config_flags raises a bare KeyError/AttributeError
  there), a value of the wrong type, a missing required flag. A `--config` path is resolved first
  (`resolve_config_args`)."""
  from absl import flags  # pylint: disable=g-import-not-at-top
  argv = resolve_config_args(argv)
  try:
    args = flags.FLAGS(argv)
  except SystemExit:
    if HELP_FLAGS.intersection(argv[1:]):
      sys.exit(0)  # absl exits 1 after printing the help a user asked for
    raise
  except flags.Error as e:
    text = str(e)
    first = text.strip().splitlines()[0] if text.strip() else ""
    detail = _last_line(text)
    _fail(first if detail == first else f"{first.rstrip(':')} {detail}")
  except (KeyError, AttributeError) as e:
    overrides = [a.split("=", 1)[0] for a in argv[1:] if a.startswith("--config.")]
    field = _last_line(e).strip("\"'")
    _fail(f"no such config field {field!r} (overrides given: {', '.join(overrides) or 'none'})")
  if "config" in flags.FLAGS and flags.FLAGS["config"].present:
    try:
      flags.FLAGS.config.keys()  # a config file that failed to load raises here (config_flags defers it)
    except OSError as e:
      _fail(f"--config: {_last_line(e)}")
  return args


def run(main: Callable, *, user_errors: tuple = ()) -> None:
  """Runs an absl `main(argv)`; `errors.UserError`, `FileNotFoundError` and `user_errors` become one
  line on stderr and exit status 2."""
  from absl import app  # pylint: disable=g-import-not-at-top
  from fewframes_jax import errors  # pylint: disable=g-import-not-at-top
  caught = (errors.UserError, FileNotFoundError, app.UsageError) + tuple(user_errors)

  def wrapped(argv):
    _quiet_logging(argv)
    try:
      return main(argv)
    except caught as e:
      message = str(e).strip() or type(e).__name__
      if isinstance(e, FileNotFoundError) and e.filename and e.filename not in message:
        message = f"{message}: {e.filename}"
      _fail(message)

  app.run(wrapped, flags_parser=parse_flags)


DATA_FLAGS = ("train_pattern", "eval_pattern", "num_classes", "num_train_examples")


def define_data_flags(flag_values=None) -> None:
  """Defines the real-data flags (the bundled dataset when none is given) in `flag_values` (absl's FLAGS)."""
  from absl import flags  # pylint: disable=g-import-not-at-top
  fv = flag_values if flag_values is not None else flags.FLAGS
  flags.DEFINE_string("train_pattern", "", "Real data: the training files (default: the preset's bundled dataset).",
                      flag_values=fv)
  flags.DEFINE_string("eval_pattern", "", "Real data: the eval files.", flag_values=fv)
  flags.DEFINE_integer("num_classes", 0, "Real data: the class count (4716 for the 2017 release, 3862 after).",
                       flag_values=fv)
  flags.DEFINE_integer("num_train_examples", 0, "Real data: the training videos (for the epoch count).",
                       flag_values=fv)


def data_overrides(flag_values=None) -> Dict[str, object]:
  """`config.data` overrides of the real-data flags ({} for the bundled dataset)."""
  from absl import flags  # pylint: disable=g-import-not-at-top
  from fewframes_jax import errors  # pylint: disable=g-import-not-at-top
  f = flag_values if flag_values is not None else flags.FLAGS
  if not (f.train_pattern or f.eval_pattern):
    return {}
  if not (f.train_pattern and f.eval_pattern and f.num_classes):
    raise errors.UserError("real data needs --train_pattern, --eval_pattern and --num_classes together")
  return dict(train_pattern=f.train_pattern, eval_pattern=f.eval_pattern, num_classes=f.num_classes,
              num_train_examples=f.num_train_examples)


def data_flag_args(flag_values=None) -> Tuple[str, ...]:
  """The real-data flags as given, for a report's reproducing command line."""
  from absl import flags  # pylint: disable=g-import-not-at-top
  f = flag_values if flag_values is not None else flags.FLAGS
  return tuple(f"--{name}={f[name].value}" for name in DATA_FLAGS if f[name].value)


def words(flag: str) -> Optional[Tuple[str, ...]]:
  """A comma-separated string flag's values; None when the flag is unset (None: the caller's default)."""
  from absl import flags  # pylint: disable=g-import-not-at-top
  text = flags.FLAGS[flag].value
  return None if text is None else tuple(x for x in text.split(",") if x)


def ints(flag: str) -> Optional[Tuple[int, ...]]:
  """A comma-separated integer flag's values (None when unset); a malformed one is a usage error naming
  the flag."""
  from absl import app, flags  # pylint: disable=g-import-not-at-top
  values = words(flag)
  try:
    return None if values is None else tuple(int(x) for x in values)
  except ValueError:
    raise app.UsageError(f"--{flag}={flags.FLAGS[flag].value!r}: expected comma-separated integers") from None
