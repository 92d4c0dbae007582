"""Early-stopping policies: after each epoch, does a model go on training?

A policy hears every model's validation metric after every epoch (``on_epoch_end``) and answers
True (continue) or False (stop), like a Ray Tune trial scheduler. With Model Hopper Parallelism
models advance through epochs independently, so policies never wait for a global epoch barrier.

``mode`` (``"min"`` or ``"max"``) may be left as None: the search then sets it from the direction
of its ``evaluation_metric`` through :meth:`BaseStopper.resolve_mode`, so the policy and the
search cannot disagree on what "better" means. Missing or non-finite values (a diverged model)
count as the worst possible value.
"""

from __future__ import annotations

import abc
import math
import numbers
import statistics
from collections.abc import Mapping
from typing import Any

from cerebro.exceptions import CerebroError, CerebroTypeError, CerebroValueError
from cerebro.tune.metrics import check_mode

__all__ = ["BaseStopper", "NoStopping", "PatienceStopping", "MedianStopping"]


def _check_int(owner: str, arg: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise CerebroTypeError(
            f"{owner}: {arg} must be an int, got {value!r} ({type(value).__name__})"
        )
    if value < minimum:
        raise CerebroValueError(f"{owner}: {arg} must be >= {minimum}, got {value!r}")
    return int(value)


class BaseStopper(abc.ABC):
    """Base class of early-stopping policies.

    Args:
        mode: ``"min"`` or ``"max"``, or None to take the search's direction.
    """

    def __init__(self, mode: str | None = None) -> None:
        self.mode = check_mode(mode, f"{type(self).__name__}: mode")

    def resolve_mode(self, mode: str) -> str:
        """Adopt the search's direction if none was given; called by the search before training.

        Raises:
            CerebroValueError: this policy was built with the opposite ``mode``.
        """
        if mode not in ("min", "max"):
            raise CerebroValueError(f"mode must be 'min' or 'max', got {mode!r}")
        if self.mode is None:
            self.mode = mode
        elif self.mode != mode:
            raise CerebroValueError(
                f"{type(self).__name__} was built with mode={self.mode!r} but the search's "
                f"evaluation_metric is {'minimised' if mode == 'min' else 'maximised'} "
                f"(mode={mode!r}); leave mode=None to follow the search"
            )
        return mode

    @abc.abstractmethod
    def on_epoch_end(self, model_id: str, epoch: int, value: float | None) -> bool:
        """Hear ``model_id``'s metric after ``epoch`` (0-based); return False to stop it."""

    def state_dict(self) -> dict[str, Any]:
        """The policy's state as JSON-compatible data, for :meth:`load_state_dict`."""
        return {"kind": type(self).__name__, "mode": self.mode}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore a state saved by :meth:`state_dict` of the same kind of policy.

        Raises:
            CerebroValueError: the state belongs to another kind of policy.
        """
        if not isinstance(state, Mapping) or state.get("kind") != type(self).__name__:
            got = state.get("kind") if isinstance(state, Mapping) else type(state).__name__
            raise CerebroValueError(
                f"state is not a {type(self).__name__} state_dict (kind {got!r})"
            )
        if self.mode is None:
            self.mode = check_mode(state.get("mode"))

    def __repr__(self) -> str:
        return f"{type(self).__name__}(mode={self.mode!r})"


class NoStopping(BaseStopper):
    """Every model trains for all its epochs."""

    def on_epoch_end(self, model_id: str, epoch: int, value: float | None) -> bool:
        return True


class _HistoryStopper(BaseStopper):
    """A policy that decides from the values each model reported, per epoch.

    Values are kept by epoch, so hearing the same epoch again (e.g. after a resume) replaces
    the value instead of counting it twice.
    """

    def __init__(self, mode: str | None = None) -> None:
        super().__init__(mode)
        self._history: dict[str, dict[int, float | None]] = {}

    def _worst(self) -> float:
        return math.inf if self.mode == "min" else -math.inf

    def _score(self, value: float | None) -> float:
        """The value to compare: missing or non-finite counts as the worst possible value."""
        return self._worst() if value is None else value

    def _better(self, a: float, b: float, margin: float = 0.0) -> bool:
        return a < b - margin if self.mode == "min" else a > b + margin

    def on_epoch_end(self, model_id: str, epoch: int, value: float | None) -> bool:
        if self.mode is None:
            raise CerebroError(
                f"{type(self).__name__} has no mode: pass mode='min' or 'max', or let the search "
                "call resolve_mode() before training"
            )
        if not isinstance(model_id, str):
            raise CerebroTypeError(f"model_id must be a str, got {model_id!r}")
        epoch = _check_int(type(self).__name__, "epoch", epoch, 0)
        if value is not None:
            if isinstance(value, bool) or not isinstance(value, numbers.Real):
                raise CerebroTypeError(
                    f"value must be a number or None, got {value!r} for model {model_id!r}"
                )
            value = float(value) if math.isfinite(value) else None
        self._history.setdefault(model_id, {})[epoch] = value
        return self._should_continue(model_id, epoch)

    @abc.abstractmethod
    def _should_continue(self, model_id: str, epoch: int) -> bool:
        """The decision for ``model_id`` after ``epoch``, from the recorded history."""

    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()
        state["history"] = {
            model_id: [[epoch, value] for epoch, value in sorted(values.items())]
            for model_id, values in self._history.items()
        }
        return state

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        super().load_state_dict(state)
        self._history = {
            str(model_id): {int(epoch): value for epoch, value in values}
            for model_id, values in state.get("history", {}).items()
        }


class PatienceStopping(_HistoryStopper):
    """Stop a model after ``patience`` epochs without improvement, like Keras' EarlyStopping.

    Each model is judged on its own values: an epoch improves when its value beats the best so
    far by more than ``min_delta``.

    Args:
        patience: epochs without improvement before the model stops (>= 1).
        min_delta: the smallest change that counts as an improvement (>= 0).
        mode: ``"min"`` or ``"max"``, or None to take the search's direction.
    """

    def __init__(self, patience: int = 3, min_delta: float = 0.0, mode: str | None = None):
        self.patience = _check_int("PatienceStopping", "patience", patience, 1)
        if isinstance(min_delta, bool) or not isinstance(min_delta, numbers.Real):
            raise CerebroTypeError(
                f"PatienceStopping: min_delta must be a number, got {min_delta!r}"
            )
        if not (math.isfinite(min_delta) and min_delta >= 0):
            raise CerebroValueError(
                f"PatienceStopping: min_delta must be a finite number >= 0, got {min_delta!r}"
            )
        self.min_delta = float(min_delta)
        super().__init__(mode)

    def _should_continue(self, model_id: str, epoch: int) -> bool:
        best = self._worst()
        wait = 0
        for e, value in sorted(self._history[model_id].items()):
            if e > epoch:
                break
            score = self._score(value)
            if self._better(score, best, self.min_delta):
                best, wait = score, 0
            else:
                wait += 1
        return wait < self.patience

    def __repr__(self) -> str:
        return (
            f"PatienceStopping(patience={self.patience}, min_delta={self.min_delta}, "
            f"mode={self.mode!r})"
        )


class MedianStopping(_HistoryStopper):
    """Stop a model whose best value so far is worse than the median of the others at that epoch.

    The median stopping rule of Google Vizier and Ray Tune (Optuna's MedianPruner): after epoch
    ``e``, compare the model's best value over epochs ``0..e`` with the median of the values
    other models reported for epoch ``e``; stop it when strictly worse. Every model trains at
    least ``grace_epochs`` epochs, and nothing is stopped while fewer than ``min_models`` other
    models have reached that epoch.

    Args:
        grace_epochs: epochs every model trains before it can be stopped (>= 1).
        min_models: other models that must have reported the epoch before a decision (>= 1).
        mode: ``"min"`` or ``"max"``, or None to take the search's direction.
    """

    def __init__(self, grace_epochs: int = 1, min_models: int = 3, mode: str | None = None):
        self.grace_epochs = _check_int("MedianStopping", "grace_epochs", grace_epochs, 1)
        self.min_models = _check_int("MedianStopping", "min_models", min_models, 1)
        super().__init__(mode)

    def _should_continue(self, model_id: str, epoch: int) -> bool:
        if epoch + 1 < self.grace_epochs:
            return True
        others = [
            self._score(values[epoch])
            for other, values in self._history.items()
            if other != model_id and epoch in values
        ]
        if len(others) < self.min_models:
            return True
        best = self._worst()
        for e, value in self._history[model_id].items():
            if e <= epoch and self._better(self._score(value), best):
                best = self._score(value)
        median = statistics.median(others)
        return not self._better(median, best)

    def __repr__(self) -> str:
        return (
            f"MedianStopping(grace_epochs={self.grace_epochs}, min_models={self.min_models}, "
            f"mode={self.mode!r})"
        )
