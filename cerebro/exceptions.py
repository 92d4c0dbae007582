"""Exceptions raised by Cerebro.

Every error that Cerebro raises on purpose derives from :class:`CerebroError`, so callers can
catch all of them at once. Errors about user input also derive from the matching built-in
(``ValueError``, ``TypeError``) so that generic handlers keep working.
"""

from __future__ import annotations

__all__ = [
    "CerebroError",
    "CerebroValueError",
    "CerebroTypeError",
    "ColumnError",
    "DataPreparationError",
    "DatasetMismatchError",
    "StoreError",
    "WorkerError",
    "ClusterCapacityError",
    "TrainingError",
    "NonFiniteLossError",
]


class CerebroError(Exception):
    """Root of every error Cerebro raises on purpose."""


class CerebroValueError(CerebroError, ValueError):
    """An argument has the right type but a bad value."""


class CerebroTypeError(CerebroError, TypeError):
    """An argument has the wrong type."""


class ColumnError(CerebroValueError):
    """A column is missing, misspelled, of an unsupported type or holds bad values."""


class DataPreparationError(CerebroError):
    """The DataFrame could not be materialised into the store."""


class DatasetMismatchError(CerebroValueError):
    """The store already holds a different prepared dataset (pass ``overwrite=True``)."""


class StoreError(CerebroError):
    """The store cannot be read or written (bad prefix, permissions, corrupt file)."""


class WorkerError(CerebroError):
    """A Cerebro worker failed, or the workers could not be started or reached."""


class ClusterCapacityError(WorkerError):
    """The cluster has fewer free task slots than the requested number of workers."""


class TrainingError(CerebroError):
    """Training or evaluating one model failed; the model is marked failed, the others go on."""


class NonFiniteLossError(TrainingError):
    """A model's loss became NaN or infinite (diverged): lower the learning rate or check data."""
