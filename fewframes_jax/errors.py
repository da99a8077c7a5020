"""Errors a user can fix: a wrong setting, a missing or malformed input file.

Their message names the field or the file and what to change. The command lines (`cli.run`) print
such an error as one line and exit non-zero; any other exception is a bug and keeps its traceback.
"""


class UserError(ValueError):
  """A mistake in the command, the config or the input data; the message says what to change."""


class ConfigError(UserError):
  """An invalid configuration; the message names the field."""
