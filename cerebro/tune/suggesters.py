"""Suggesters: which hyperparameter configuration to train next.

A suggester is driven by events, like Ray Tune's searchers: the search asks ``suggest()`` for a
configuration whenever it can start a model and tells ``report(trial_id, value)`` when the model
is done (``value`` is its final metric, ``None`` when it failed). ``suggest()`` returns ``None``
when it has nothing to offer; ``exhausted`` says whether that is for ever (every configuration
handed out) or only for now (TPE waiting for results).

Every suggester can be saved and resumed: ``state_dict()`` is JSON-compatible and
``load_state_dict()`` on a suggester built with the same arguments continues the same sequence.
The state is the log of suggest/report events; loading replays it, which restores the exact
random-number and sampler state without pickling library internals.

Optuna is imported only when a :class:`TPESuggester` is built.
"""

from __future__ import annotations

import abc
import contextlib
import hashlib
import itertools
import logging
import math
import numbers
import random
from collections.abc import Iterator, Mapping
from typing import Any, ClassVar, NamedTuple

from cerebro.exceptions import CerebroTypeError, CerebroValueError
from cerebro.tune.space import Choice, Distribution, validate_search_space

logger = logging.getLogger(__name__)

__all__ = [
    "Suggestion",
    "BaseSuggester",
    "GridSuggester",
    "RandomSuggester",
    "TPESuggester",
]

_STATE_VERSION = 1


class Suggestion(NamedTuple):
    """A configuration to train: ``trial_id`` (0, 1, 2... in suggestion order) and ``params``."""

    trial_id: int
    params: dict[str, Any]


def _check_int(arg: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise CerebroTypeError(f"{arg} must be an int, got {value!r} ({type(value).__name__})")
    if value < minimum:
        raise CerebroValueError(f"{arg} must be >= {minimum}, got {value!r}")
    return int(value)


def _check_seed(seed: Any) -> int | None:
    if seed is None:
        return None
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise CerebroTypeError(
            f"seed must be an int or None, got {seed!r} ({type(seed).__name__})"
        )
    return int(seed)


def _check_direction(direction: Any) -> str:
    if direction not in ("min", "max"):
        raise CerebroValueError(f"direction must be 'min' or 'max', got {direction!r}")
    return direction


def derive_seed(seed: int, *names: str) -> int:
    """A 64-bit seed derived from ``seed`` and ``names``; stable across processes and runs."""
    text = "\x00".join([str(seed), *names])
    return int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:8], "big")


class BaseSuggester(abc.ABC):
    """Base class: bookkeeping of suggested, pending and reported trials, save and resume.

    Subclasses say how many configurations they offer (``num_trials``), produce the params of
    the next one (``_next_params``) and may hold suggestions back (``_can_suggest``).

    Args:
        search_space: dict of hyperparameter name -> ``hp_*`` primitive.
        seed: makes the sequence of configurations reproducible.
    """

    #: name stored in :meth:`state_dict`, checked by :meth:`load_state_dict`.
    kind: ClassVar[str] = ""

    def __init__(self, search_space: Mapping[str, Distribution], *, seed: int | None) -> None:
        self.search_space = validate_search_space(search_space)
        self.seed = _check_seed(seed)
        self._events: list[list[Any]] = []
        self._pending: dict[int, dict[str, Any]] = {}
        self._results: dict[int, float | None] = {}
        self._num_suggested = 0

    # -- what subclasses provide ---------------------------------------------------------------

    @property
    @abc.abstractmethod
    def num_trials(self) -> int:
        """How many configurations this suggester hands out in total."""

    @abc.abstractmethod
    def _next_params(self, trial_id: int) -> dict[str, Any]:
        """The params of trial ``trial_id`` (called once per trial, in order)."""

    def _can_suggest(self) -> bool:
        """Whether a suggestion may be made now (TPE limits trials in flight)."""
        return True

    def _on_report(self, trial_id: int, value: float | None) -> None:  # noqa: B027 - a hook
        """Hear a result (TPE tells Optuna)."""

    def _config(self) -> dict[str, Any]:
        """Constructor arguments that a saved state must match."""
        return {"num_trials": self.num_trials}

    def _reset(self) -> None:
        """Forget everything suggested, back to the state right after ``__init__``."""
        self._events = []
        self._pending = {}
        self._results = {}
        self._num_suggested = 0

    # -- public API ----------------------------------------------------------------------------

    @property
    def num_suggested(self) -> int:
        """How many configurations have been handed out so far."""
        return self._num_suggested

    @property
    def exhausted(self) -> bool:
        """True when :meth:`suggest` will never return a configuration again."""
        return self._num_suggested >= self.num_trials

    @property
    def finished(self) -> bool:
        """True when every configuration was handed out and reported."""
        return self.exhausted and not self._pending

    @property
    def pending(self) -> list[int]:
        """Trial ids suggested but not reported yet, oldest first."""
        return list(self._pending)

    def pending_params(self, trial_id: int) -> dict[str, Any]:
        """The configuration of a trial suggested but not reported yet (e.g. after a resume)."""
        if trial_id not in self._pending:
            raise CerebroValueError(f"trial_id {trial_id!r} is not pending: {self.pending}")
        return dict(self._pending[trial_id])

    @property
    def results(self) -> dict[int, float | None]:
        """Reported values by trial id (``None`` for failed trials)."""
        return dict(self._results)

    def suggest(self) -> Suggestion | None:
        """The next configuration, or ``None``: see :attr:`exhausted` for whether more will come.

        Returns:
            ``Suggestion(trial_id, params)`` with a fresh params dict in search-space key order.
        """
        if self.exhausted or not self._can_suggest():
            return None
        trial_id = self._num_suggested
        params = self._next_params(trial_id)
        self._num_suggested += 1
        self._pending[trial_id] = params
        self._events.append(["s", trial_id])
        return Suggestion(trial_id, dict(params))

    def report(self, trial_id: int, value: float | None) -> None:
        """Record the final metric of a suggested trial; ``None`` means the trial failed.

        A value that is not finite (NaN, inf) is recorded as a failure, with a warning.

        Raises:
            CerebroValueError: ``trial_id`` is not pending (never suggested or already reported).
            CerebroTypeError: ``value`` is neither a number nor None.
        """
        if trial_id not in self._pending:
            raise CerebroValueError(
                f"trial_id {trial_id!r} is not pending (never suggested or already reported); "
                f"pending trials: {self.pending}"
            )
        if value is not None:
            if isinstance(value, bool) or not isinstance(value, numbers.Real):
                raise CerebroTypeError(
                    f"value must be a number or None (failed), got {value!r} for trial {trial_id}"
                )
            value = float(value)
            if not math.isfinite(value):
                logger.warning("trial %d reported %r: recorded as failed", trial_id, value)
                value = None
        del self._pending[trial_id]
        self._results[trial_id] = value
        self._events.append(["r", trial_id, value])
        self._on_report(trial_id, value)

    def state_dict(self) -> dict[str, Any]:
        """The suggester's state as JSON-compatible data, for :meth:`load_state_dict`."""
        return {
            "kind": self.kind,
            "version": _STATE_VERSION,
            "space": {k: v.describe() for k, v in self.search_space.items()},
            "seed": self.seed,
            "config": self._config(),
            "events": [list(e) for e in self._events],
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore a state saved by :meth:`state_dict`; the sequence then continues unchanged.

        The suggester must have been built with the same search space and arguments (a seed
        left as None is taken from the state). Trials pending when the state was saved are
        pending again.

        Raises:
            CerebroValueError: the state belongs to another kind of suggester, another search
                space or other arguments, or its events cannot be replayed.
        """
        if not isinstance(state, Mapping):
            raise CerebroTypeError(f"state must be a dict, got {type(state).__name__}")
        for key in ("kind", "version", "space", "seed", "config", "events"):
            if key not in state:
                raise CerebroValueError(f"state is missing {key!r}: not a suggester state_dict")
        if state["kind"] != self.kind or state["version"] != _STATE_VERSION:
            raise CerebroValueError(
                f"state is a {state['kind']!r} suggester state (version {state['version']}), "
                f"this is a {self.kind!r} suggester (version {_STATE_VERSION})"
            )
        space = {k: v.describe() for k, v in self.search_space.items()}
        if state["space"] != space:
            raise CerebroValueError(
                f"state was saved for search space {state['space']}, this suggester has {space}"
            )
        if state["config"] != self._config():
            raise CerebroValueError(
                f"state was saved with {state['config']}, this suggester has {self._config()}"
            )
        self._adopt_seed(state["seed"])
        self._reset()
        self._replay(state)

    def _adopt_seed(self, seed: int | None) -> None:
        if seed != self.seed:
            raise CerebroValueError(
                f"state was saved with seed={seed!r}, this suggester has seed={self.seed!r}"
            )

    def _replay(self, state: Mapping[str, Any]) -> None:
        for event in state["events"]:
            if event[0] == "s":
                self._replay_suggest(event[1])
            elif event[0] == "r":
                self.report(event[1], event[2])
            else:
                raise CerebroValueError(f"state holds an unknown event {event!r}")

    def _replay_suggest(self, trial_id: int) -> None:
        suggestion = self.suggest()
        if suggestion is None or suggestion.trial_id != trial_id:
            raise CerebroValueError(
                f"state cannot be replayed: expected to suggest trial {trial_id}, got "
                f"{suggestion!r}"
            )

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(num_trials={self.num_trials}, "
            f"suggested={self._num_suggested}, pending={len(self._pending)})"
        )


class _SeededSuggester(BaseSuggester):
    """A suggester whose seed, when not given, is drawn once and kept (and saved)."""

    def __init__(self, search_space: Mapping[str, Distribution], *, seed: int | None) -> None:
        super().__init__(search_space, seed=seed)
        self._seed_given = self.seed is not None
        if self.seed is None:
            self.seed = random.SystemRandom().randrange(2**31)

    def _adopt_seed(self, seed: int | None) -> None:
        # A seed drawn at random (none given) yields to the saved one; _reset then rebuilds
        # whatever depends on it.
        if not self._seed_given and isinstance(seed, int):
            self.seed = seed
        super()._adopt_seed(seed)


class GridSuggester(BaseSuggester):
    """Every combination of the ``hp_choice`` options, each once.

    The order is the Cartesian product in search-space key order with the last key varying
    fastest (like nested for loops); a ``seed`` shuffles that order reproducibly.

    Args:
        search_space: dict of name -> ``hp_choice``; any other primitive is an error.
        seed: None keeps the natural order; an int shuffles it.

    Raises:
        CerebroTypeError: a hyperparameter is not an ``hp_choice``.
    """

    kind = "grid"

    def __init__(
        self, search_space: Mapping[str, Distribution], *, seed: int | None = None
    ) -> None:
        super().__init__(search_space, seed=seed)
        self._options: list[tuple[Any, ...]] = []
        for key, dist in self.search_space.items():
            if not isinstance(dist, Choice):
                raise CerebroTypeError(
                    f"grid search needs hp_choice for every hyperparameter, but {key!r} is "
                    f"{dist!r}; list the values to try with hp_choice([...]) or use random or "
                    "TPE search"
                )
            self._options.append(dist.options)
        self._sizes = [len(options) for options in self._options]
        self._total = math.prod(self._sizes)
        self._order: list[int] | None = None
        if self.seed is not None:
            self._order = list(range(self._total))
            random.Random(self.seed).shuffle(self._order)

    @property
    def num_trials(self) -> int:
        return self._total

    def _next_params(self, trial_id: int) -> dict[str, Any]:
        index = self._order[trial_id] if self._order is not None else trial_id
        picks = []
        for size in reversed(self._sizes):  # mixed-radix digits, last key fastest
            index, digit = divmod(index, size)
            picks.append(digit)
        picks.reverse()
        return {
            key: options[i] for key, options, i in zip(self.search_space, self._options, picks)
        }

    def all_params(self) -> Iterator[dict[str, Any]]:
        """Every configuration in natural order (ignoring the seed), without suggesting."""
        keys = list(self.search_space)
        for combo in itertools.product(*self._options):
            yield dict(zip(keys, combo))


class RandomSuggester(_SeededSuggester):
    """``num_models`` configurations drawn at random, each hyperparameter independently.

    Each hyperparameter has its own random stream seeded from ``(seed, name)``: the draws of one
    hyperparameter do not depend on the others, so adding, removing or reordering keys leaves
    the other keys' draws unchanged, and the same seed gives the same configurations. Draws
    are not de-duplicated (a small ``hp_choice``-only space can repeat a configuration).

    Args:
        search_space: dict of name -> ``hp_*`` primitive.
        num_models: how many configurations to draw (>= 1).
        seed: None draws a seed once (kept in :attr:`seed` and in the saved state).
    """

    kind = "random"

    def __init__(
        self,
        search_space: Mapping[str, Distribution],
        num_models: int,
        *,
        seed: int | None = None,
    ) -> None:
        self.num_models = _check_int("num_models", num_models, 1)
        super().__init__(search_space, seed=seed)
        self._rngs = self._make_rngs()

    def _make_rngs(self) -> dict[str, random.Random]:
        return {key: random.Random(derive_seed(self.seed, key)) for key in self.search_space}

    def _reset(self) -> None:
        super()._reset()
        self._rngs = self._make_rngs()

    @property
    def num_trials(self) -> int:
        return self.num_models

    def _next_params(self, trial_id: int) -> dict[str, Any]:
        return {key: dist.sample(self._rngs[key]) for key, dist in self.search_space.items()}


@contextlib.contextmanager
def _quiet_optuna() -> Iterator[None]:
    """Raise Optuna's own logger to WARNING for the duration (its INFO lines are per trial).

    Only the ``optuna`` logger is touched, and its level is restored afterwards, so neither
    the application's logging configuration nor its own use of Optuna changes.
    """
    optuna_logger = logging.getLogger("optuna")
    level = optuna_logger.level
    if optuna_logger.getEffectiveLevel() < logging.WARNING:
        optuna_logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        optuna_logger.setLevel(level)


class TPESuggester(_SeededSuggester):
    """Tree-structured Parzen Estimator (Optuna's ``TPESampler``) through ask-and-tell.

    At most ``parallelism`` trials are in flight (suggested and not reported); each report is
    told to the Optuna study before the next suggestion, so later configurations learn from
    earlier results. Failed trials are told as FAIL. The first ``n_startup_trials`` are
    random, as in Optuna; running trials are treated with Optuna's constant liar, so parallel
    suggestions spread out.

    Args:
        search_space: dict of name -> ``hp_*`` primitive.
        num_models: how many configurations to suggest in total (>= 1).
        parallelism: the most trials in flight at once (>= 1).
        seed: None draws a seed once (kept in :attr:`seed` and in the saved state).
        direction: ``"min"`` or ``"max"``: whether lower or higher reported values are better.
        n_startup_trials: random trials before TPE takes over (>= 0).
    """

    kind = "tpe"

    def __init__(
        self,
        search_space: Mapping[str, Distribution],
        num_models: int,
        *,
        parallelism: int = 1,
        seed: int | None = None,
        direction: str = "min",
        n_startup_trials: int = 10,
    ) -> None:
        self.num_models = _check_int("num_models", num_models, 1)
        self.parallelism = _check_int("parallelism", parallelism, 1)
        self.direction = _check_direction(direction)
        self.n_startup_trials = _check_int("n_startup_trials", n_startup_trials, 0)
        super().__init__(search_space, seed=seed)
        self._trials: dict[int, Any] = {}
        self._optuna_params: dict[int, dict[str, Any]] = {}
        self._forced_params: Mapping[str, Any] | None = None
        self._study = self._new_study()

    def _new_study(self) -> Any:
        import optuna  # lazy: `from cerebro.tune import hp_choice` must stay fast

        with _quiet_optuna():
            sampler = optuna.samplers.TPESampler(
                seed=self.seed % 2**32,  # numpy's range; any int seed works
                n_startup_trials=self.n_startup_trials,
                constant_liar=True,
            )
            direction = "minimize" if self.direction == "min" else "maximize"
            return optuna.create_study(sampler=sampler, direction=direction)

    def _reset(self) -> None:
        super()._reset()
        self._trials = {}
        self._optuna_params = {}
        self._study = self._new_study()

    def _config(self) -> dict[str, Any]:
        return {
            "num_trials": self.num_trials,
            "parallelism": self.parallelism,
            "direction": self.direction,
            "n_startup_trials": self.n_startup_trials,
        }

    @property
    def num_trials(self) -> int:
        return self.num_models

    @property
    def study(self) -> Any:
        """The ``optuna.Study`` behind the suggestions (read it, do not tell it results)."""
        return self._study

    def _can_suggest(self) -> bool:
        return len(self._pending) < self.parallelism

    def _next_params(self, trial_id: int) -> dict[str, Any]:
        forced = self._forced_params.get(str(trial_id)) if self._forced_params else None
        with _quiet_optuna():
            if forced is not None:
                self._study.enqueue_trial(forced)
            trial = self._study.ask()
            params = {key: dist.suggest(trial, key) for key, dist in self.search_space.items()}
        self._trials[trial_id] = trial
        self._optuna_params[trial_id] = dict(trial.params)
        return params

    def _on_report(self, trial_id: int, value: float | None) -> None:
        from optuna.trial import TrialState

        trial = self._trials.pop(trial_id)
        with _quiet_optuna():
            if value is None:
                self._study.tell(trial, state=TrialState.FAIL)
            else:
                self._study.tell(trial, value)

    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()
        state["optuna_params"] = {str(k): dict(v) for k, v in self._optuna_params.items()}
        return state

    def _replay(self, state: Mapping[str, Any]) -> None:
        # Replaying the same asks and tells with the same seed reproduces Optuna's sampler
        # state exactly. Should the sampler draw differently (another Optuna version), the
        # recorded params are imposed instead: results are kept, the sequence may then differ.
        recorded = state.get("optuna_params") or {}
        super()._replay(state)
        mismatch = [tid for tid, p in self._optuna_params.items() if recorded.get(str(tid)) != p]
        if not mismatch:
            return
        logger.warning(
            "TPE replay drew different params for trials %s (another Optuna version?); "
            "restoring the recorded params, later suggestions may differ from the original run",
            mismatch[:10],
        )
        self._reset()
        self._forced_params = recorded
        try:
            super()._replay(state)
        finally:
            self._forced_params = None
