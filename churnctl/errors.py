"""Exceptions raised by churnctl; each carries the process exit code the CLI uses.

Exit codes (documented in the README):

* 0 - success
* 1 - unexpected error (a bug or an environment problem); rerun with ``--debug``
* 2 - bad input, configuration, rules or model file: the message names the file,
  row/column or key and what to do
"""

from __future__ import annotations


class ChurnctlError(Exception):
    """Base class: an error churnctl expected and can explain in one line."""

    exit_code = 1


class InputError(ChurnctlError):
    """Bad data, configuration or rules: the user must fix an input."""

    exit_code = 2


class ConfigError(InputError):
    """A configuration or rules file is invalid."""


class ModelError(InputError):
    """A model file is missing, tampered with, or does not fit the data."""


class TrainingError(InputError):
    """The data cannot support training (too few churners, too few snapshots...)."""


class LockError(ChurnctlError):
    """Another run holds the lock."""

    exit_code = 2
