"""Search-space primitives: validation, sampling distributions, Optuna declaration."""

from __future__ import annotations

import dataclasses
import math
import random
import subprocess
import sys
from collections import Counter

import optuna
import pytest

from cerebro.exceptions import CerebroError, CerebroTypeError, CerebroValueError
from cerebro.tune import (
    Distribution,
    hp_choice,
    hp_loguniform,
    hp_qloguniform,
    hp_quniform,
    hp_uniform,
    validate_search_space,
)

N = 4000


def draws(dist, n=N, seed=0):
    rng = random.Random(seed)
    return [dist.sample(rng) for _ in range(n)]


def is_multiple(value, q):
    return math.isclose(value / q, round(value / q), abs_tol=1e-9)


@pytest.mark.parametrize(
    ("build", "error", "fragments"),
    [
        (lambda: hp_choice([]), CerebroValueError, ["hp_choice", "options", "empty"]),
        (lambda: hp_choice("abc"), CerebroTypeError, ["hp_choice", "options", "'abc'"]),
        (lambda: hp_choice({"a": 1}), CerebroTypeError, ["options", "dict"]),
        (lambda: hp_choice({1, 2}), CerebroTypeError, ["options", "set"]),
        (lambda: hp_choice(5), CerebroTypeError, ["options", "5"]),
        (lambda: hp_choice([1, 2, 1]), CerebroValueError, ["repeat", "1 twice"]),
        (lambda: hp_choice(["a", "a"]), CerebroValueError, ["repeat", "'a' twice"]),
        (lambda: hp_uniform(1, 1), CerebroValueError, ["hp_uniform", "min must be < max", "1"]),
        (lambda: hp_uniform(2.0, 1.0), CerebroValueError, ["min=2.0", "max=1.0"]),
        (lambda: hp_uniform("0", 1), CerebroTypeError, ["hp_uniform", "min", "'0'"]),
        (lambda: hp_uniform(0, None), CerebroTypeError, ["max", "None"]),
        (lambda: hp_uniform(True, 2), CerebroTypeError, ["min", "True"]),
        (lambda: hp_uniform(0, math.inf), CerebroValueError, ["max", "finite", "inf"]),
        (lambda: hp_uniform(math.nan, 1), CerebroValueError, ["min", "finite", "nan"]),
        (lambda: hp_loguniform(0, 1), CerebroValueError, ["hp_loguniform", "min must be > 0"]),
        (lambda: hp_loguniform(-4, -1), CerebroValueError, ["not exponents", "-4"]),
        (lambda: hp_loguniform(1e-1, 1e-4), CerebroValueError, ["min must be < max"]),
        (lambda: hp_quniform(0, 1, 0), CerebroValueError, ["hp_quniform", "q must be > 0", "0"]),
        (lambda: hp_quniform(0, 1, -0.5), CerebroValueError, ["q must be > 0", "-0.5"]),
        (lambda: hp_quniform(0, 1, "x"), CerebroTypeError, ["q", "'x'"]),
        (lambda: hp_quniform(0.1, 0.2, 0.5), CerebroValueError, ["no multiple of q=0.5"]),
        (lambda: hp_quniform(5, 1, 1), CerebroValueError, ["min must be < max"]),
        (lambda: hp_qloguniform(0, 100, 1), CerebroValueError, ["hp_qloguniform", "min", "> 0"]),
        (lambda: hp_qloguniform(1, 100, 0), CerebroValueError, ["hp_qloguniform", "q", "> 0"]),
        (lambda: hp_qloguniform(3, 5, 8), CerebroValueError, ["no multiple of q=8"]),
    ],
)
def test_bad_primitives_raise_clear_errors(build, error, fragments):
    with pytest.raises(error) as info:
        build()
    assert isinstance(info.value, CerebroError)
    for fragment in fragments:
        assert fragment in str(info.value)


def test_primitives_are_immutable_and_comparable():
    dist = hp_uniform(0, 1)
    with pytest.raises(dataclasses.FrozenInstanceError):
        dist.min = 5
    choice = hp_choice([1, 2])
    with pytest.raises(dataclasses.FrozenInstanceError):
        choice.options = (3,)
    assert hp_uniform(0, 1) == hp_uniform(0, 1)
    assert hp_uniform(0.1, 1) != hp_loguniform(0.1, 1)  # same bounds, different distribution
    assert hash(hp_quniform(0, 1, 0.1)) == hash(hp_quniform(0, 1, 0.1))
    assert repr(hp_loguniform(1e-4, 1e-1)) == "hp_loguniform(0.0001, 0.1)"
    assert repr(hp_choice((32, "relu"))) == "hp_choice([32, 'relu'])"
    assert repr(hp_qloguniform(32, 1024, 32)) == "hp_qloguniform(32, 1024, 32)"
    assert all(isinstance(d, Distribution) for d in (dist, choice))


def test_choice_accepts_any_sequence_and_any_objects():
    assert hp_choice(range(3)).options == (0, 1, 2)
    assert hp_choice(x * 2 for x in (1, 2)).options == (2, 4)
    # Distinct types that compare equal are not duplicates; unhashable options are fine.
    layers = hp_choice([[32], [64, 32], (64, 32), 1, 1.0, True, None, len])
    values = draws(layers, n=2000)
    assert Counter(map(repr, values)).keys() == {repr(o) for o in layers.options}


def test_choice_is_uniform_over_options():
    counts = Counter(draws(hp_choice(["a", "b", "c", "d"])))
    assert set(counts) == {"a", "b", "c", "d"}
    for count in counts.values():
        assert abs(count / N - 0.25) < 0.03


def test_uniform_draws_fill_the_interval():
    values = draws(hp_uniform(-2, 6))
    assert all(-2 <= v <= 6 for v in values)
    assert all(isinstance(v, float) for v in values)
    assert abs(sum(values) / N - 2.0) < 0.15
    quarters = Counter(min(int((v + 2) / 2), 3) for v in values)
    assert all(abs(quarters[i] / N - 0.25) < 0.03 for i in range(4))


def test_loguniform_bounds_are_values_and_log_is_uniform():
    values = draws(hp_loguniform(1e-4, 1e-1))
    # The bounds are the values themselves (not exponents, which would give e**1e-4 ~ 1.0).
    assert all(1e-4 <= v <= 1e-1 for v in values)
    # Each decade is equally likely: log10 of the values is uniform on [-4, -1].
    decades = Counter(min(int(-math.log10(v)), 3) for v in values)
    assert set(decades) == {1, 2, 3}
    for count in decades.values():
        assert abs(count / N - 1 / 3) < 0.03
    mean_log = sum(math.log10(v) for v in values) / N
    assert abs(mean_log - (-2.5)) < 0.05


def test_quniform_values_are_multiples_of_q_within_bounds():
    dist = hp_quniform(0.25, 0.95, 0.1)
    values = draws(dist)
    assert all(0.25 <= v <= 0.95 and is_multiple(v, 0.1) for v in values)
    # Decimal arithmetic: clean values, every multiple in range reached.
    assert set(values) == {0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9} == set(dist.values())
    # round(x / q) * q, clipped to the multiples of q inside [min, max]
    assert dist.quantize(0.01) == 0.3
    assert dist.quantize(0.64) == 0.6
    assert dist.quantize(0.66) == 0.7
    assert dist.quantize(5.0) == 0.9


def test_quniform_with_int_arguments_gives_ints():
    dist = hp_quniform(16, 256, 16)
    values = draws(dist, n=1000)
    assert all(type(v) is int and v % 16 == 0 and 16 <= v <= 256 for v in values)
    assert set(values) == set(range(16, 257, 16))
    # Bounds that are not multiples of q clip to the multiples inside them.
    assert set(draws(hp_quniform(1, 10, 4), n=500)) == {4, 8}


def test_qloguniform_is_quantised_and_log_distributed():
    dist = hp_qloguniform(32, 1024, 32)
    values = draws(dist)
    assert all(type(v) is int and v % 32 == 0 and 32 <= v <= 1024 for v in values)
    counts = Counter(values)
    # log-uniform: [32, 64) holds as much mass as [512, 1024), so small values are far denser
    assert counts[32] + counts[64] > 4 * (counts[992] + counts[1024])
    below_181 = sum(1 for v in values if v <= 181)  # sqrt(32 * 1024) ~ 181: the log midpoint
    assert abs(below_181 / N - 0.5) < 0.05
    floats = draws(hp_qloguniform(0.001, 1.0, 0.001), n=500)
    assert all(0.001 <= v <= 1.0 and is_multiple(v, 0.001) for v in floats)


def test_same_rng_seed_gives_same_draws():
    dist = hp_loguniform(1e-5, 1.0)
    assert draws(dist, n=50, seed=7) == draws(dist, n=50, seed=7)
    assert draws(dist, n=50, seed=7) != draws(dist, n=50, seed=8)


def test_primitives_declare_themselves_to_optuna():
    space = {
        "layers": hp_choice([(32,), (64, 32), "wide"]),
        "dropout": hp_uniform(0.0, 0.5),
        "lr": hp_loguniform(1e-4, 1e-1),
        "units": hp_quniform(16, 128, 16),
        "momentum": hp_quniform(0.8, 0.99, 0.05),
        "batch": hp_qloguniform(32, 1024, 32),
    }
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    for _ in range(30):
        trial = study.ask()
        params = {k: d.suggest(trial, k) for k, d in space.items()}
        assert params["layers"] in space["layers"].options
        assert 0.0 <= params["dropout"] <= 0.5
        assert 1e-4 <= params["lr"] <= 1e-1
        assert type(params["units"]) is int and params["units"] % 16 == 0
        assert params["momentum"] in space["momentum"].values()
        assert type(params["batch"]) is int and params["batch"] % 32 == 0
        study.tell(trial, 0.0)
    dists = study.trials[0].distributions
    assert isinstance(dists["layers"], optuna.distributions.CategoricalDistribution)
    assert dists["lr"].log is True and (dists["lr"].low, dists["lr"].high) == (1e-4, 1e-1)
    assert dists["dropout"].log is False
    assert dists["batch"].log is True
    # Quantised uniform: Optuna sees k of k * q, a discrete range over exactly the values.
    assert (dists["units"].low, dists["units"].high) == (1, 8)
    assert (dists["momentum"].low, dists["momentum"].high) == (16, 19)


def test_validate_search_space_accepts_and_copies():
    space = {"b": hp_choice([1, 2]), "a": hp_uniform(0, 1)}
    checked = validate_search_space(space)
    assert checked == space and checked is not space
    assert list(checked) == ["b", "a"]


@pytest.mark.parametrize(
    ("space", "error", "fragments"),
    [
        ([("lr", hp_uniform(0, 1))], CerebroTypeError, ["search_space must be a dict", "list"]),
        (None, CerebroTypeError, ["search_space must be a dict", "NoneType"]),
        ({}, CerebroValueError, ["at least one hyperparameter"]),
        ({1: hp_uniform(0, 1)}, CerebroTypeError, ["keys must be non-empty strings", "1"]),
        ({"": hp_uniform(0, 1)}, CerebroTypeError, ["keys must be non-empty strings", "''"]),
        ({"units": [32, 64]}, CerebroTypeError, ["'units'", "list", "hp_choice([32, 64])"]),
        ({"act": ("relu", "tanh")}, CerebroTypeError, ["hp_choice(['relu', 'tanh'])"]),
        ({"lr": 0.01}, CerebroTypeError, ["'lr'", "float 0.01", "hp_choice([0.01])"]),
        ({"x": hp_uniform}, CerebroTypeError, ["'x'", "must be an hp_* primitive"]),
    ],
)
def test_validate_search_space_errors(space, error, fragments):
    with pytest.raises(error) as info:
        validate_search_space(space)
    for fragment in fragments:
        assert fragment in str(info.value)


def test_validate_search_space_names_the_argument():
    with pytest.raises(CerebroValueError, match="param_grid must hold"):
        validate_search_space({}, name="param_grid")


def test_import_is_light():
    code = (
        "import sys\n"
        "from cerebro.tune import hp_choice, TPESuggester, PatienceStopping, resolve_metric\n"
        "heavy = [m for m in ('optuna', 'tensorflow', 'keras', 'pyspark') if m in sys.modules]\n"
        "print(heavy)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
