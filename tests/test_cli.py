"""The command lines' shared flags: the real-data flags and their `config.data` overrides."""
from absl import flags
import pytest

from fewframes_jax import cli
from fewframes_jax.errors import UserError


def _flags(*args):
  fv = flags.FlagValues()
  cli.define_data_flags(fv)
  fv(["prog", *args])
  return fv


def test_no_data_flags_mean_the_bundled_data():
  fv = _flags()
  assert cli.data_overrides(fv) == {} and cli.data_flag_args(fv) == ()


def test_real_data_flags_become_config_data_overrides():
  fv = _flags("--train_pattern=/d/train*", "--eval_pattern=/d/val*", "--num_classes=3862",
              "--num_train_examples=100")
  assert cli.data_overrides(fv) == dict(train_pattern="/d/train*", eval_pattern="/d/val*", num_classes=3862,
                                        num_train_examples=100)
  assert cli.data_flag_args(fv)[:2] == ("--train_pattern=/d/train*", "--eval_pattern=/d/val*")


@pytest.mark.parametrize("args", [["--train_pattern=/d/train*"], ["--train_pattern=/d/t*", "--eval_pattern=/d/v*"]])
def test_incomplete_real_data_is_one_clear_error(args):
  with pytest.raises(UserError, match="--train_pattern, --eval_pattern and --num_classes together"):
    cli.data_overrides(_flags(*args))
