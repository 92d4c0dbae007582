"""Search-space primitives: the distributions a hyperparameter is drawn from.

A search space is a dict of hyperparameter name -> primitive::

    {"lr": hp_loguniform(1e-4, 1e-1), "units": hp_choice([32, 64, 128]),
     "dropout": hp_uniform(0.0, 0.5), "batch_size": hp_qloguniform(32, 1024, 32)}

Bounds always mean the values themselves, also on a log scale: ``hp_loguniform(1e-4, 1e-1)``
draws values between 1e-4 and 1e-1 (not between e**1e-4 and e**1e-1, as some libraries do).
Quantised primitives return ``round(x / q) * q`` for a draw ``x``, clipped to the smallest and
largest multiple of ``q`` inside ``[min, max]``, so every value is a multiple of ``q`` within the
bounds; when ``min``, ``max`` and ``q`` are all ints the values are ints.

Each primitive draws from a ``random.Random`` (grid and random search) and declares itself to an
Optuna trial (TPE). Primitives are immutable and validated when they are built, so a bad space
fails before any Spark job starts. Nothing here imports Optuna, TensorFlow or Spark.
"""

from __future__ import annotations

import abc
import math
import numbers
import random
from collections.abc import Mapping, Set
from dataclasses import dataclass, field
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal
from typing import TYPE_CHECKING, Any

from cerebro.exceptions import CerebroTypeError, CerebroValueError

if TYPE_CHECKING:
    import optuna

__all__ = [
    "Distribution",
    "Choice",
    "Uniform",
    "QUniform",
    "LogUniform",
    "QLogUniform",
    "hp_choice",
    "hp_uniform",
    "hp_quniform",
    "hp_loguniform",
    "hp_qloguniform",
    "validate_search_space",
]


def _real(func: str, arg: str, value: Any) -> int | float:
    """Return ``value`` as a finite int or float, else raise naming ``func`` and ``arg``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise CerebroTypeError(
            f"{func}: {arg} must be a real number, got {value!r} ({type(value).__name__})"
        )
    if not math.isfinite(value):
        raise CerebroValueError(f"{func}: {arg} must be a finite number, got {value!r}")
    return int(value) if isinstance(value, numbers.Integral) else float(value)


def _same(a: Any, b: Any) -> bool:
    """Whether two choice options are duplicates: same type and equal."""
    if type(a) is not type(b):
        return False
    try:
        return bool(a == b)
    except Exception:  # e.g. numpy arrays: no single truth value, treat as distinct
        return False


class Distribution(abc.ABC):
    """Base class of the search-space primitives (build them with the ``hp_*`` functions)."""

    @abc.abstractmethod
    def sample(self, rng: random.Random) -> Any:
        """Draw one value using ``rng``."""

    @abc.abstractmethod
    def suggest(self, trial: optuna.trial.Trial, name: str) -> Any:
        """Declare this primitive to an Optuna trial as parameter ``name``; return the value."""

    @abc.abstractmethod
    def describe(self) -> dict[str, Any]:
        """A JSON-compatible description, used to check that a saved search matches its space."""


@dataclass(frozen=True, repr=False)
class Choice(Distribution):
    """One of a fixed list of options, each equally likely (see :func:`hp_choice`)."""

    options: tuple[Any, ...]

    def __post_init__(self) -> None:
        options = self.options
        if isinstance(options, (str, bytes, Mapping, Set)) or not hasattr(options, "__iter__"):
            raise CerebroTypeError(
                "hp_choice: options must be a list or tuple of values, "
                f"got {options!r} ({type(options).__name__})"
            )
        options = tuple(options)
        if not options:
            raise CerebroValueError("hp_choice: options must not be empty, got []")
        for i, a in enumerate(options):
            for b in options[:i]:
                if _same(a, b):
                    raise CerebroValueError(
                        f"hp_choice: options must not repeat a value, got {a!r} twice in "
                        f"{list(options)!r}"
                    )
        object.__setattr__(self, "options", options)

    def sample(self, rng: random.Random) -> Any:
        return self.options[rng.randrange(len(self.options))]

    def suggest(self, trial: optuna.trial.Trial, name: str) -> Any:
        # Optuna sees the option's index: options may be any Python object (tuples, callables),
        # which Optuna's categorical distribution cannot store; for TPE categories are unordered,
        # so indices lose nothing.
        index = trial.suggest_categorical(name, list(range(len(self.options))))
        return self.options[index]

    def describe(self) -> dict[str, Any]:
        return {"type": "choice", "num_options": len(self.options)}

    def __repr__(self) -> str:
        return f"hp_choice({list(self.options)!r})"


@dataclass(frozen=True, repr=False)
class Uniform(Distribution):
    """A float uniformly distributed between ``min`` and ``max`` (see :func:`hp_uniform`)."""

    min: float
    max: float

    _func = "hp_uniform"

    def __post_init__(self) -> None:
        low = _real(self._func, "min", self.min)
        high = _real(self._func, "max", self.max)
        if not low < high:
            raise CerebroValueError(
                f"{self._func}: min must be < max, got min={low!r}, max={high!r}"
            )
        object.__setattr__(self, "min", low)
        object.__setattr__(self, "max", high)

    def sample(self, rng: random.Random) -> float:
        return min(max(rng.uniform(self.min, self.max), self.min), self.max)

    def suggest(self, trial: optuna.trial.Trial, name: str) -> float:
        return trial.suggest_float(name, float(self.min), float(self.max))

    def describe(self) -> dict[str, Any]:
        return {"type": "uniform", "min": self.min, "max": self.max}

    def __repr__(self) -> str:
        return f"{self._func}({self.min!r}, {self.max!r})"


def _check_log_bounds(func: str, minimum: float) -> None:
    """Log scales need positive bounds; say that the bounds are values, not exponents."""
    if minimum <= 0:
        raise CerebroValueError(
            f"{func}: min must be > 0 (the bounds are the values themselves, not "
            f"exponents), got min={minimum!r}"
        )


@dataclass(frozen=True, repr=False)
class LogUniform(Uniform):
    """A float whose logarithm is uniform; the bounds are values (see :func:`hp_loguniform`)."""

    _func = "hp_loguniform"

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_log_bounds(self._func, self.min)

    def sample(self, rng: random.Random) -> float:
        value = math.exp(rng.uniform(math.log(self.min), math.log(self.max)))
        return min(max(value, self.min), self.max)

    def suggest(self, trial: optuna.trial.Trial, name: str) -> float:
        value = trial.suggest_float(name, float(self.min), float(self.max), log=True)
        return min(max(value, self.min), self.max)

    def describe(self) -> dict[str, Any]:
        return {"type": "loguniform", "min": self.min, "max": self.max}


@dataclass(frozen=True, repr=False)
class QUniform(Uniform):
    """A uniform draw rounded to a multiple of ``q`` within the bounds (see :func:`hp_quniform`).

    Multiples are computed in decimal arithmetic so ``hp_quniform(0, 1, 0.1)`` gives ``0.3``,
    not ``0.30000000000000004``.
    """

    q: float = 1.0
    _k_min: int = field(init=False, repr=False, compare=False, default=0)
    _k_max: int = field(init=False, repr=False, compare=False, default=0)

    _func = "hp_quniform"

    def __post_init__(self) -> None:
        super().__post_init__()
        q = _real(self._func, "q", self.q)
        if q <= 0:
            raise CerebroValueError(f"{self._func}: q must be > 0, got q={q!r}")
        object.__setattr__(self, "q", q)
        q_dec = Decimal(repr(q))
        k_min = int((Decimal(repr(self.min)) / q_dec).to_integral_value(ROUND_CEILING))
        k_max = int((Decimal(repr(self.max)) / q_dec).to_integral_value(ROUND_FLOOR))
        if k_min > k_max:
            raise CerebroValueError(
                f"{self._func}: no multiple of q={q!r} lies in [min, max] = "
                f"[{self.min!r}, {self.max!r}]; use a smaller q or wider bounds"
            )
        object.__setattr__(self, "_k_min", k_min)
        object.__setattr__(self, "_k_max", k_max)

    @property
    def _integral(self) -> bool:
        return all(isinstance(v, int) for v in (self.min, self.max, self.q))

    def _multiple(self, k: int) -> int | float:
        """``k * q`` as an int (int bounds and q) or as the float nearest the exact decimal."""
        if self._integral:
            return k * int(self.q)
        return float(k * Decimal(repr(self.q)))

    def quantize(self, x: float) -> int | float:
        """``round(x / q) * q`` clipped to the multiples of ``q`` within ``[min, max]``."""
        k = min(max(round(x / self.q), self._k_min), self._k_max)
        return self._multiple(k)

    def values(self) -> list[int | float]:
        """Every value this primitive can produce, in increasing order."""
        return [self._multiple(k) for k in range(self._k_min, self._k_max + 1)]

    def sample(self, rng: random.Random) -> int | float:
        return self.quantize(super().sample(rng))

    def suggest(self, trial: optuna.trial.Trial, name: str) -> int | float:
        # Optuna sees the integer k of the value k * q: a float ``step`` would make Optuna check
        # (high - low) / q in binary floating point and adjust high on rounding noise.
        return self._multiple(trial.suggest_int(name, self._k_min, self._k_max))

    def describe(self) -> dict[str, Any]:
        return {"type": "quniform", "min": self.min, "max": self.max, "q": self.q}

    def __repr__(self) -> str:
        return f"{self._func}({self.min!r}, {self.max!r}, {self.q!r})"


@dataclass(frozen=True, repr=False)
class QLogUniform(QUniform):
    """A log-uniform draw rounded to a multiple of ``q`` (see :func:`hp_qloguniform`)."""

    _func = "hp_qloguniform"

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_log_bounds(self._func, self.min)

    def sample(self, rng: random.Random) -> int | float:
        value = math.exp(rng.uniform(math.log(self.min), math.log(self.max)))
        return self.quantize(value)

    def suggest(self, trial: optuna.trial.Trial, name: str) -> int | float:
        # Optuna cannot combine log=True with a step: TPE models the continuous log-scale value
        # and the result is quantised the same way as a random draw.
        value = trial.suggest_float(name, float(self.min), float(self.max), log=True)
        return self.quantize(value)

    def describe(self) -> dict[str, Any]:
        return {"type": "qloguniform", "min": self.min, "max": self.max, "q": self.q}


def hp_choice(options: Any) -> Choice:
    """One of ``options``, each equally likely; the only primitive grid search accepts.

    Args:
        options: a non-empty list or tuple of distinct values (any Python objects).

    Raises:
        CerebroTypeError: ``options`` is not a list-like (a string, dict or set).
        CerebroValueError: ``options`` is empty or repeats a value.
    """
    return Choice(options)


def hp_uniform(min: float, max: float) -> Uniform:
    """A float drawn uniformly from ``[min, max]``.

    Raises:
        CerebroTypeError / CerebroValueError: a bound is not a finite number, or min >= max.
    """
    return Uniform(min, max)


def hp_quniform(min: float, max: float, q: float) -> QUniform:
    """A uniform draw from ``[min, max]`` rounded to a multiple of ``q`` within the bounds.

    The value is ``round(x / q) * q`` clipped to the smallest and largest multiples of ``q`` in
    ``[min, max]``; ints when ``min``, ``max`` and ``q`` are all ints (e.g. layer sizes).

    Raises:
        CerebroTypeError / CerebroValueError: bad bounds, ``q <= 0``, or no multiple of ``q`` in
            ``[min, max]``.
    """
    return QUniform(min, max, q)


def hp_loguniform(min: float, max: float) -> LogUniform:
    """A float between ``min`` and ``max`` whose logarithm is uniform (e.g. learning rates).

    The bounds are the values themselves: ``hp_loguniform(1e-4, 1e-1)`` draws from
    ``[1e-4, 1e-1]``, each decade equally likely.

    Raises:
        CerebroTypeError / CerebroValueError: bad bounds, ``min <= 0`` or ``min >= max``.
    """
    return LogUniform(min, max)


def hp_qloguniform(min: float, max: float, q: float) -> QLogUniform:
    """A log-uniform draw from ``[min, max]`` rounded to a multiple of ``q`` within the bounds.

    Same quantisation as :func:`hp_quniform` (ints when all arguments are ints), e.g.
    ``hp_qloguniform(32, 1024, 32)`` for batch sizes.

    Raises:
        CerebroTypeError / CerebroValueError: bad bounds, ``min <= 0``, ``q <= 0``, or no
            multiple of ``q`` in ``[min, max]``.
    """
    return QLogUniform(min, max, q)


def validate_search_space(space: Any, name: str = "search_space") -> dict[str, Distribution]:
    """Check a search space and return it as a new dict in the same key order.

    Every searcher calls this before anything runs, so a bad space fails early and clearly.

    Args:
        space: a non-empty dict of hyperparameter name (str) -> ``hp_*`` primitive.
        name: the argument name used in error messages.

    Raises:
        CerebroTypeError: ``space`` is not a dict, a key is not a string or a value is not an
            ``hp_*`` primitive (a plain value or list suggests ``hp_choice``).
        CerebroValueError: ``space`` is empty or a key is an empty string.
    """
    if not isinstance(space, Mapping):
        raise CerebroTypeError(
            f"{name} must be a dict of hyperparameter name -> hp_* primitive, "
            f"got {type(space).__name__}"
        )
    if not space:
        raise CerebroValueError(
            f"{name} must hold at least one hyperparameter, got {{}}; "
            "e.g. {'lr': hp_loguniform(1e-4, 1e-1)}"
        )
    result: dict[str, Distribution] = {}
    for key, value in space.items():
        if not isinstance(key, str) or not key:
            raise CerebroTypeError(
                f"{name} keys must be non-empty strings (hyperparameter names), got {key!r}"
            )
        if not isinstance(value, Distribution):
            if isinstance(value, (list, tuple)):
                fix = f"to try each of these values use hp_choice({list(value)!r})"
            else:
                fix = (
                    f"to try this single value use hp_choice([{value!r}]), or set it inside "
                    "estimator_gen_fn"
                )
            raise CerebroTypeError(
                f"{name}[{key!r}] must be an hp_* primitive (hp_choice, hp_uniform, hp_quniform, "
                f"hp_loguniform, hp_qloguniform), got {type(value).__name__} {value!r}; {fix}"
            )
        result[key] = value
    return result
