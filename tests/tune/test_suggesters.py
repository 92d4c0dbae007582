"""Suggesters: grid, random and TPE; waiting vs exhausted; save and resume."""

from __future__ import annotations

import json
import logging
import math
import statistics
import zlib

import pytest

from cerebro.exceptions import CerebroTypeError, CerebroValueError
from cerebro.tune import (
    GridSuggester,
    RandomSuggester,
    TPESuggester,
    hp_choice,
    hp_loguniform,
    hp_qloguniform,
    hp_quniform,
    hp_uniform,
)

MIXED = {
    "x": hp_uniform(0, 1),
    "y": hp_uniform(0, 1),
    "lr": hp_loguniform(1e-4, 1e-1),
    "act": hp_choice(["relu", "tanh", ("leaky", 0.1)]),
    "units": hp_quniform(16, 128, 16),
    "batch": hp_qloguniform(32, 512, 32),
}


def objective(params):
    """A smooth synthetic objective with its minimum at x=0.7, y=0.2, lr=1e-2."""
    return (
        (params["x"] - 0.7) ** 2
        + (params["y"] - 0.2) ** 2
        + (math.log10(params["lr"]) + 2) ** 2 / 9
    )


def values_for(params):
    """A deterministic value for any params (for tests where the values' meaning is moot)."""
    return float(zlib.crc32(repr(sorted(params.items())).encode()) % 997)


def drive(
    suggester, fn=values_for, *, window=None, max_pending=None, stop_after=None, values=None
):
    """Run a suggester like a search would, reporting the oldest pending trial first.

    Args:
        window: report before suggesting more once this many trials are pending (like a
            search with that many workers); None suggests until the suggester says None.
        max_pending: assert that no more trials than this are ever pending.
        stop_after: stop once this many trials have been suggested in this call.
        values: trial id -> value, carried over for trials suggested before this call.

    Trial ids 6, 13, 20... fail. Returns the suggestions made, in order.
    """
    suggestions = []
    values = {} if values is None else values
    while not suggester.finished:
        if max_pending is not None:
            assert len(suggester.pending) <= max_pending
        if stop_after is not None and len(suggestions) >= stop_after:
            break
        full = window is not None and len(suggester.pending) >= window
        suggestion = None if full else suggester.suggest()
        if suggestion is None:
            assert suggester.pending, "None from suggest() with nothing pending"
            trial_id = suggester.pending[0]
            suggester.report(trial_id, None if trial_id % 7 == 6 else values[trial_id])
            continue
        suggestions.append(suggestion)
        values[suggestion.trial_id] = fn(suggestion.params)
    return suggestions


def json_round_trip(state):
    return json.loads(json.dumps(state, allow_nan=False))


# -- grid ------------------------------------------------------------------------------------


def test_grid_is_the_full_product_in_nested_loop_order():
    space = {
        "units": hp_choice([32, 64]),
        "lr": hp_choice([1e-3, 1e-4, 1e-5]),
        "act": hp_choice(["relu"]),
    }
    grid = GridSuggester(space)
    assert grid.num_trials == 6
    suggestions = []
    while (s := grid.suggest()) is not None:
        suggestions.append(s)
    assert [s.trial_id for s in suggestions] == list(range(6))
    assert [tuple(s.params.values()) for s in suggestions] == [
        (32, 1e-3, "relu"),
        (32, 1e-4, "relu"),
        (32, 1e-5, "relu"),
        (64, 1e-3, "relu"),
        (64, 1e-4, "relu"),
        (64, 1e-5, "relu"),
    ]
    assert [s.params for s in suggestions] == list(grid.all_params())
    assert all(list(s.params) == ["units", "lr", "act"] for s in suggestions)
    assert grid.exhausted and not grid.finished
    assert grid.pending == list(range(6))
    for s in suggestions:
        grid.report(s.trial_id, float(s.trial_id))
    assert grid.finished and grid.suggest() is None
    assert grid.results == {i: float(i) for i in range(6)}


def test_grid_seed_shuffles_reproducibly():
    space = {"a": hp_choice(list(range(5))), "b": hp_choice(list("xyz")), "c": hp_choice([0, 1])}
    natural = [s.params for s in drive(GridSuggester(space))]
    first = [s.params for s in drive(GridSuggester(space, seed=3))]
    again = [s.params for s in drive(GridSuggester(space, seed=3))]
    other = [s.params for s in drive(GridSuggester(space, seed=4))]
    assert len(natural) == 30
    assert first == again
    assert first != natural and first != other
    key = lambda p: tuple(p.values())  # noqa: E731
    assert sorted(map(key, first)) == sorted(map(key, natural)) == sorted(map(key, other))
    assert len(set(map(key, first))) == 30


def test_grid_rejects_non_choice_and_names_the_key():
    with pytest.raises(CerebroTypeError) as info:
        GridSuggester({"units": hp_choice([1, 2]), "lr": hp_loguniform(1e-4, 1e-1)})
    message = str(info.value)
    assert "'lr'" in message and "hp_loguniform(0.0001, 0.1)" in message
    assert "hp_choice" in message
    with pytest.raises(CerebroTypeError, match=r"hp_choice\(\[32, 64\]\)"):
        GridSuggester({"units": [32, 64]})


# -- random ----------------------------------------------------------------------------------


def test_random_same_seed_same_configurations():
    a = [s.params for s in drive(RandomSuggester(MIXED, 25, seed=11))]
    b = [s.params for s in drive(RandomSuggester(MIXED, 25, seed=11))]
    c = [s.params for s in drive(RandomSuggester(MIXED, 25, seed=12))]
    assert len(a) == 25 and a == b and a != c
    for params in a:
        assert 1e-4 <= params["lr"] <= 1e-1
        assert params["act"] in MIXED["act"].options
        assert params["units"] % 16 == 0


def test_random_keys_are_independent():
    space = {"x": hp_uniform(0, 1), "y": hp_uniform(0, 1)}
    params = [s.params for s in drive(RandomSuggester(space, 2000, seed=5))]
    xs = [p["x"] for p in params]
    ys = [p["y"] for p in params]
    assert abs(statistics.correlation(xs, ys)) < 0.06
    # Not the same stream under two names either: successive draws of x and y differ.
    assert all(x != y for x, y in zip(xs, ys))
    # Adding a key, or reordering keys, leaves the other keys' draws unchanged.
    wider = {"z": hp_choice([1, 2, 3]), "y": hp_uniform(0, 1), "x": hp_uniform(0, 1)}
    params3 = [s.params for s in drive(RandomSuggester(wider, 2000, seed=5))]
    assert [p["x"] for p in params3] == xs
    assert [p["y"] for p in params3] == ys


def test_random_without_seed_draws_one_and_keeps_it():
    suggester = RandomSuggester(MIXED, 5)
    assert isinstance(suggester.seed, int)
    expected = [s.params for s in drive(RandomSuggester(MIXED, 5, seed=suggester.seed))]
    values = {}
    head = drive(suggester, window=2, stop_after=3, values=values)
    resumed = RandomSuggester(MIXED, 5)  # draws another seed, replaced by the saved one
    resumed.load_state_dict(json_round_trip(suggester.state_dict()))
    assert resumed.seed == suggester.seed
    assert resumed.pending == [1, 2]
    tail = drive(resumed, window=2, values=values)
    assert [s.params for s in head + tail] == expected


# -- TPE -------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_tpe_concentrates_near_the_optimum_more_than_random(seed):
    tpe = drive(TPESuggester(MIXED, 60, parallelism=2, seed=seed), objective, max_pending=2)
    rnd = drive(RandomSuggester(MIXED, 60, seed=seed), objective)
    tpe_late = statistics.median(objective(s.params) for s in tpe[-20:])
    rnd_late = statistics.median(objective(s.params) for s in rnd[-20:])
    assert tpe_late < 0.3 * rnd_late, (tpe_late, rnd_late)
    # ... and TPE's own later suggestions beat its random start-up trials.
    tpe_early = statistics.median(objective(s.params) for s in tpe[:10])
    assert tpe_late < 0.5 * tpe_early


def test_tpe_never_has_more_than_parallelism_outstanding():
    tpe = TPESuggester(MIXED, 6, parallelism=2, seed=0)
    first, second = tpe.suggest(), tpe.suggest()
    assert (first.trial_id, second.trial_id) == (0, 1)
    # Waiting, not exhausted: nothing now, more after a report.
    assert tpe.suggest() is None and not tpe.exhausted and tpe.pending == [0, 1]
    tpe.report(1, 0.5)
    third = tpe.suggest()
    assert third.trial_id == 2 and tpe.suggest() is None
    drive(tpe, max_pending=2, values={0: 1.0, 2: 2.0})
    assert tpe.finished and tpe.exhausted and tpe.num_suggested == 6


def test_tpe_suggestions_depend_on_reported_values():
    space = {"x": hp_uniform(-5, 5), "c": hp_choice(["a", "b", "c"])}

    def run(fn):
        tpe = TPESuggester(space, 25, seed=7, n_startup_trials=5)
        return [s.params for s in drive(tpe, fn=fn)]

    near_plus = run(lambda p: (p["x"] - 4) ** 2)
    near_minus = run(lambda p: (p["x"] + 4) ** 2)
    same = run(lambda p: (p["x"] - 4) ** 2)
    assert near_plus == same  # deterministic given seed and results
    assert near_plus[:5] == near_minus[:5]  # the random start-up does not look at results
    assert near_plus[5:] != near_minus[5:]  # afterwards the results steer the sampler
    assert statistics.mean(p["x"] for p in near_plus[10:]) > 1
    assert statistics.mean(p["x"] for p in near_minus[10:]) < -1


@pytest.mark.parametrize("make", [RandomSuggester, TPESuggester])
@pytest.mark.parametrize("seed", [-5, 0, 2**40])
def test_any_int_seed_works(make, seed):
    a = [s.params for s in drive(make(MIXED, 4, seed=seed))]
    b = [s.params for s in drive(make(MIXED, 4, seed=seed))]
    assert a == b and len(a) == 4


def test_tpe_maximises_when_told():
    space = {"x": hp_uniform(-5, 5)}
    tpe = TPESuggester(space, 30, seed=1, direction="max", n_startup_trials=5)
    late = [s.params["x"] for s in drive(tpe, fn=lambda p: -((p["x"] - 3) ** 2))][-10:]
    assert statistics.mean(abs(x - 3) for x in late) < 1.5


def test_tpe_tells_failures_and_results_to_optuna():
    from optuna.trial import TrialState

    tpe = TPESuggester(MIXED, 14, parallelism=3, seed=0)
    suggestions = drive(tpe, objective)
    states = [t.state for t in tpe.study.trials]
    assert len(states) == 14
    assert states.count(TrialState.FAIL) == 2  # trials 6 and 13
    assert states[6] == TrialState.FAIL and states[13] == TrialState.FAIL
    assert tpe.results[6] is None
    assert tpe.study.trials[0].value == pytest.approx(objective(suggestions[0].params))


def test_tpe_keeps_optuna_quiet_without_touching_logging_config(capfd, caplog):
    optuna_logger = logging.getLogger("optuna")
    level_before = optuna_logger.level
    root_before = logging.getLogger().level
    with caplog.at_level(logging.DEBUG):
        drive(TPESuggester(MIXED, 12, parallelism=2, seed=0))
    out, err = capfd.readouterr()
    assert "Trial" not in err and "A new study created" not in err
    assert optuna_logger.level == level_before
    assert logging.getLogger().level == root_before


# -- errors ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("build", "error", "fragment"),
    [
        (lambda: RandomSuggester(MIXED, 0), CerebroValueError, "num_models must be >= 1, got 0"),
        (lambda: RandomSuggester(MIXED, 2.5), CerebroTypeError, "num_models must be an int"),
        (lambda: RandomSuggester(MIXED, 3, seed="1"), CerebroTypeError, "seed must be an int"),
        (lambda: RandomSuggester({}, 3), CerebroValueError, "at least one hyperparameter"),
        (
            lambda: TPESuggester(MIXED, 5, parallelism=0),
            CerebroValueError,
            "parallelism must be >= 1",
        ),
        (
            lambda: TPESuggester(MIXED, 5, direction="minimize"),
            CerebroValueError,
            "'min' or 'max'",
        ),
        (
            lambda: TPESuggester(MIXED, 5, n_startup_trials=-1),
            CerebroValueError,
            "n_startup_trials",
        ),
        (lambda: TPESuggester(MIXED, True), CerebroTypeError, "num_models must be an int"),
        (lambda: GridSuggester({"a": hp_choice([1])}, seed=1.5), CerebroTypeError, "seed"),
    ],
)
def test_constructor_errors(build, error, fragment):
    with pytest.raises(error, match=fragment.replace("(", r"\(").replace(")", r"\)")):
        build()


@pytest.mark.parametrize(
    "make",
    [
        lambda: GridSuggester({"a": hp_choice([1, 2, 3])}),
        lambda: RandomSuggester(MIXED, 3, seed=0),
        lambda: TPESuggester(MIXED, 3, parallelism=2, seed=0),
    ],
)
def test_report_errors_and_non_finite_values(make, caplog):
    suggester = make()
    s0, s1 = suggester.suggest(), suggester.suggest()
    with pytest.raises(CerebroValueError, match="trial_id 5 is not pending"):
        suggester.report(5, 1.0)
    with pytest.raises(CerebroTypeError, match="value must be a number or None"):
        suggester.report(s0.trial_id, "0.5")
    suggester.report(s0.trial_id, 0.5)
    with pytest.raises(CerebroValueError, match="already reported"):
        suggester.report(s0.trial_id, 0.5)
    with caplog.at_level(logging.WARNING, logger="cerebro.tune.suggesters"):
        suggester.report(s1.trial_id, math.nan)
    assert "recorded as failed" in caplog.text
    assert suggester.results == {s0.trial_id: 0.5, s1.trial_id: None}


# -- save and resume -------------------------------------------------------------------------

SUGGESTERS = {
    "grid": lambda: GridSuggester(
        {"a": hp_choice([1, 2, 3, 4]), "b": hp_choice(["x", "y", "z"])}, seed=2
    ),
    "grid-natural": lambda: GridSuggester({"a": hp_choice([1, 2]), "b": hp_choice([3, 4, 5])}),
    "random": lambda: RandomSuggester(MIXED, 12, seed=3),
    "tpe": lambda: TPESuggester(MIXED, 16, parallelism=3, seed=4, n_startup_trials=4),
}


@pytest.mark.parametrize("name", sorted(SUGGESTERS))
@pytest.mark.parametrize("stop_after", [0, 1, 5])
def test_state_dict_round_trip_continues_the_same_sequence(name, stop_after):
    make = SUGGESTERS[name]
    uninterrupted = [s.params for s in drive(make(), window=3)]

    original = make()
    values = {}
    head = drive(original, window=3, stop_after=stop_after, values=values)
    state = json_round_trip(original.state_dict())
    resumed = make()
    resumed.load_state_dict(state)
    assert resumed.pending == original.pending  # trials in flight are pending again
    assert bool(resumed.pending) == (stop_after > 0)
    assert resumed.num_suggested == original.num_suggested == len(head)
    assert resumed.results == original.results
    assert resumed.state_dict() == state

    # drive() reports the oldest pending trial first, as in the uninterrupted run, so the
    # resumed suggester must continue exactly as if it had never stopped (TPE included).
    tail = drive(resumed, window=3, values=values)
    assert tail, "something was left to suggest after the resume point"
    assert [s.params for s in head + tail] == uninterrupted
    assert [s.params for s in drive(original, window=3, values=values)] == [s.params for s in tail]


def test_load_state_dict_rejects_mismatches():
    state = RandomSuggester(MIXED, 12, seed=3).state_dict()
    with pytest.raises(CerebroValueError, match="'random' suggester state"):
        TPESuggester(MIXED, 12, seed=3).load_state_dict(state)
    with pytest.raises(CerebroValueError, match="search space"):
        RandomSuggester({**MIXED, "extra": hp_uniform(0, 1)}, 12, seed=3).load_state_dict(state)
    with pytest.raises(CerebroValueError, match="search space"):
        RandomSuggester({**MIXED, "x": hp_uniform(0, 2)}, 12, seed=3).load_state_dict(state)
    with pytest.raises(CerebroValueError, match="seed=3"):
        RandomSuggester(MIXED, 12, seed=4).load_state_dict(state)
    with pytest.raises(CerebroValueError, match="num_trials"):
        RandomSuggester(MIXED, 13, seed=3).load_state_dict(state)
    with pytest.raises(CerebroValueError, match="missing 'events'"):
        RandomSuggester(MIXED, 12, seed=3).load_state_dict(
            {k: v for k, v in state.items() if k != "events"}
        )
    tpe_state = TPESuggester(MIXED, 12, parallelism=2, seed=3).state_dict()
    with pytest.raises(CerebroValueError, match="parallelism"):
        TPESuggester(MIXED, 12, parallelism=3, seed=3).load_state_dict(tpe_state)
    with pytest.raises(CerebroTypeError, match="state must be a dict"):
        TPESuggester(MIXED, 12, seed=3).load_state_dict([1, 2])


def test_tpe_resume_imposes_recorded_params_if_the_sampler_drifts(caplog):
    original = TPESuggester(MIXED, 10, parallelism=2, seed=0, n_startup_trials=2)
    values = {}
    drive(original, stop_after=5, values=values)
    state = json_round_trip(original.state_dict())
    # Pretend the state came from another Optuna version that drew a different x for trial 3.
    state["optuna_params"]["3"]["x"] = 0.123
    resumed = TPESuggester(MIXED, 10, parallelism=2, seed=0, n_startup_trials=2)
    with caplog.at_level(logging.WARNING, logger="cerebro.tune.suggesters"):
        resumed.load_state_dict(state)
    assert "restoring the recorded params" in caplog.text
    assert resumed.study.trials[3].params["x"] == 0.123
    assert resumed.results == original.results
    assert resumed.pending == original.pending == [3, 4]
    drive(resumed, values=values)
    assert resumed.finished
