"""Early-stopping policies on hand-made metric sequences."""

from __future__ import annotations

import json
import math

import pytest

from cerebro.exceptions import CerebroError, CerebroTypeError, CerebroValueError
from cerebro.tune import BaseStopper, MedianStopping, NoStopping, PatienceStopping


def decisions(stopper, model_id, values):
    """Feed one model's per-epoch values; return the continue/stop answer after each epoch."""
    return [stopper.on_epoch_end(model_id, epoch, v) for epoch, v in enumerate(values)]


def first_stop(stopper, model_id, values):
    """The 0-based epoch after which the policy stops the model, or None."""
    for epoch, value in enumerate(values):
        if not stopper.on_epoch_end(model_id, epoch, value):
            return epoch
    return None


def test_no_stopping_always_continues():
    stopper = NoStopping()
    assert all(decisions(stopper, "m", [1.0, 5.0, math.nan, None, 9.0]))
    assert isinstance(stopper, BaseStopper)
    assert stopper.state_dict() == {"kind": "NoStopping", "mode": None}


@pytest.mark.parametrize(
    ("patience", "mode", "values", "stop_epoch"),
    [
        # min: best 0.5 at epoch 1, then 2 epochs without improvement -> stop after epoch 3
        (2, "min", [1.0, 0.5, 0.6, 0.55, 0.4], 3),
        (1, "min", [1.0, 0.5, 0.6, 0.4], 2),
        (3, "min", [1.0, 0.9, 0.8, 0.7, 0.6, 0.5], None),  # always improving
        (2, "min", [1.0, 1.0, 1.0], 2),  # equal is not an improvement
        # max: accuracy
        (2, "max", [0.5, 0.7, 0.6, 0.65, 0.9], 3),
        (2, "max", [0.5, 0.6, 0.55, 0.61, 0.6, 0.59], 5),
        # a diverged model: NaN / None count as the worst value
        (2, "min", [1.0, math.nan, None, 0.1], 2),
        (1, "min", [math.nan], 0),
    ],
)
def test_patience_decisions(patience, mode, values, stop_epoch):
    assert first_stop(PatienceStopping(patience=patience, mode=mode), "m", values) == stop_epoch


def test_patience_min_delta():
    values = [1.0, 0.95, 0.92, 0.91, 0.5]
    assert first_stop(PatienceStopping(patience=2, min_delta=0.0, mode="min"), "m", values) is None
    # improvements below min_delta do not count: 0.95 and 0.92 are within 0.1 of 1.0
    assert first_stop(PatienceStopping(patience=2, min_delta=0.1, mode="min"), "m", values) == 2
    values = [0.5, 0.52, 0.7]
    assert first_stop(PatienceStopping(patience=1, min_delta=0.05, mode="max"), "m", values) == 1


def test_patience_judges_each_model_on_its_own():
    stopper = PatienceStopping(patience=2, mode="min")
    assert stopper.on_epoch_end("a", 0, 1.0)
    assert stopper.on_epoch_end("b", 0, 0.1)
    assert stopper.on_epoch_end("a", 1, 0.9)  # worse than b, but better than a's own best
    assert stopper.on_epoch_end("b", 1, 0.2)
    assert stopper.on_epoch_end("a", 2, 0.8)
    assert not stopper.on_epoch_end("b", 2, 0.3)


def test_repeated_epoch_replaces_instead_of_counting_twice():
    stopper = PatienceStopping(patience=2, mode="min")
    assert stopper.on_epoch_end("m", 0, 1.0)
    assert stopper.on_epoch_end("m", 1, 2.0)
    assert stopper.on_epoch_end("m", 1, 2.0)  # heard again (e.g. after a resume)
    assert stopper.on_epoch_end("m", 1, 2.0)
    assert not stopper.on_epoch_end("m", 2, 2.0)


def test_median_stopping_hand_made():
    stopper = MedianStopping(grace_epochs=2, min_models=2, mode="min")
    # Three reference models finish their epochs first.
    for model_id, values in {
        "a": [1.0, 0.8, 0.6],
        "b": [1.2, 0.9, 0.7],
        "c": [0.9, 0.7, 0.5],
    }.items():
        assert all(decisions(stopper, model_id, values))  # fewer than 2 others at first
    # d is bad at epoch 0, inside the grace period: continues even though it is the worst.
    assert stopper.on_epoch_end("d", 0, 5.0)
    # epoch 1: d's best 1.0 vs median of others at epoch 1 (0.8): worse -> stop
    assert not stopper.on_epoch_end("d", 1, 1.0)
    # e: best 0.8 vs median 0.85 at epoch 1, best 0.55 vs median 0.6 at epoch 2: continues
    assert stopper.on_epoch_end("e", 0, 1.0)
    assert stopper.on_epoch_end("e", 1, 0.8)
    assert stopper.on_epoch_end("e", 2, 0.55)
    # f's best so far (0.5 at epoch 0) counts, not its latest value
    assert stopper.on_epoch_end("f", 0, 0.5)
    assert stopper.on_epoch_end("f", 1, 3.0)


def test_median_stopping_max_mode_and_min_models():
    stopper = MedianStopping(grace_epochs=1, min_models=3, mode="max")
    assert stopper.on_epoch_end("a", 0, 0.9)
    assert stopper.on_epoch_end("b", 0, 0.8)
    assert stopper.on_epoch_end("c", 0, 0.1)  # only 2 others so far: no decision
    assert not stopper.on_epoch_end("d", 0, 0.2)  # median of 0.9, 0.8, 0.1 is 0.8
    assert stopper.on_epoch_end("e", 0, 0.85)
    # models that have not reached an epoch do not count for it
    assert stopper.on_epoch_end("a", 1, 0.1)  # nobody else at epoch 1 yet


def test_median_stopping_treats_diverged_models_as_worst():
    stopper = MedianStopping(grace_epochs=1, min_models=2, mode="min")
    assert stopper.on_epoch_end("a", 0, 1.0)
    assert stopper.on_epoch_end("b", 0, 2.0)
    assert not stopper.on_epoch_end("nan", 0, math.nan)
    assert not stopper.on_epoch_end("none", 0, None)
    assert stopper.on_epoch_end("ok", 0, 1.5)  # median of 1.0, 2.0, inf, inf is inf


@pytest.mark.parametrize(
    "make",
    [
        lambda: PatienceStopping(patience=2, min_delta=0.01),
        lambda: MedianStopping(grace_epochs=1, min_models=2),
    ],
)
def test_state_dict_round_trip(make):
    def feed(stopper, events):
        return [stopper.on_epoch_end(*event) for event in events]

    first = [("a", 0, 1.0), ("b", 0, 2.0), ("a", 1, 0.9), ("c", 0, math.nan), ("b", 1, 2.1)]
    rest = [("c", 1, 3.0), ("a", 2, 0.95), ("b", 2, 2.2), ("a", 3, 0.96), ("d", 0, 1.5)]
    reference = make()
    reference.resolve_mode("min")
    expected = feed(reference, first + rest)

    original = make()
    original.resolve_mode("min")
    feed(original, first)
    state = json.loads(json.dumps(original.state_dict(), allow_nan=False))
    resumed = make()  # mode None: taken from the state
    resumed.load_state_dict(state)
    assert resumed.mode == "min"
    assert resumed.state_dict() == state
    assert feed(resumed, rest) == expected[len(first) :]
    assert False in expected  # the sequence exercises a stop


def test_load_state_dict_rejects_another_policy():
    state = PatienceStopping(mode="min").state_dict()
    with pytest.raises(CerebroValueError, match="not a MedianStopping state_dict"):
        MedianStopping().load_state_dict(state)


def test_mode_follows_the_search_unless_given():
    stopper = PatienceStopping(patience=1)
    assert stopper.mode is None
    with pytest.raises(CerebroError, match="has no mode"):
        stopper.on_epoch_end("m", 0, 1.0)
    assert stopper.resolve_mode("max") == "max" and stopper.mode == "max"
    assert stopper.on_epoch_end("m", 0, 0.5) and stopper.on_epoch_end("m", 1, 0.6)
    assert not stopper.on_epoch_end("m", 2, 0.6)
    given = MedianStopping(mode="min")
    assert given.resolve_mode("min") == "min"
    with pytest.raises(CerebroValueError) as info:
        given.resolve_mode("max")
    assert "mode='min'" in str(info.value) and "maximised" in str(info.value)
    with pytest.raises(CerebroValueError, match="got 'up'"):
        NoStopping().resolve_mode("up")


@pytest.mark.parametrize(
    ("build", "error", "fragment"),
    [
        (lambda: PatienceStopping(patience=0), CerebroValueError, "patience must be >= 1, got 0"),
        (lambda: PatienceStopping(patience=1.5), CerebroTypeError, "patience must be an int"),
        (lambda: PatienceStopping(patience=True), CerebroTypeError, "got True"),
        (lambda: PatienceStopping(min_delta=-0.1), CerebroValueError, "min_delta must be a"),
        (lambda: PatienceStopping(min_delta=math.inf), CerebroValueError, "got inf"),
        (lambda: PatienceStopping(min_delta="0"), CerebroTypeError, "min_delta must be a number"),
        (lambda: PatienceStopping(mode="minimize"), CerebroValueError, "mode must be 'min'"),
        (lambda: MedianStopping(grace_epochs=0), CerebroValueError, "grace_epochs must be >= 1"),
        (
            lambda: MedianStopping(min_models=0),
            CerebroValueError,
            "min_models must be >= 1, got 0",
        ),
        (lambda: MedianStopping(min_models=None), CerebroTypeError, "min_models must be an int"),
        (lambda: MedianStopping(mode=1), CerebroValueError, "got 1"),
    ],
)
def test_constructor_errors(build, error, fragment):
    with pytest.raises(error) as info:
        build()
    assert fragment in str(info.value)


def test_on_epoch_end_argument_errors():
    stopper = PatienceStopping(mode="min")
    with pytest.raises(CerebroTypeError, match="value must be a number or None"):
        stopper.on_epoch_end("m", 0, "0.5")
    with pytest.raises(CerebroValueError, match="epoch must be >= 0, got -1"):
        stopper.on_epoch_end("m", -1, 0.5)
    with pytest.raises(CerebroTypeError, match="model_id must be a str"):
        stopper.on_epoch_end(3, 0, 0.5)
