"""Metric names and directions: what a search optimises and which way."""

from __future__ import annotations

import math

import pytest

from cerebro.exceptions import CerebroTypeError, CerebroValueError
from cerebro.tune import is_better, metric_direction, resolve_metric

MINIMISED = [
    "loss", "mse", "mean_squared_error", "mae", "mean_absolute_error", "mape",
    "mean_absolute_percentage_error", "msle", "mean_squared_logarithmic_error", "rmse",
    "root_mean_squared_error", "binary_crossentropy", "categorical_crossentropy",
    "sparse_categorical_crossentropy", "binary_focal_crossentropy", "kl_divergence", "hinge",
    "poisson", "log_cosh",
    # multi-output models and custom names ending in a known one
    "output_a_loss", "dense_1_loss", "my_crossentropy", "val_loss", "VAL_LOSS",
]  # fmt: skip

MAXIMISED = [
    "accuracy", "acc", "binary_accuracy", "categorical_accuracy", "sparse_categorical_accuracy",
    "top_k_categorical_accuracy", "sparse_top_k_categorical_accuracy", "auc", "precision",
    "recall", "f1", "f1_score", "fbeta_score", "r2_score", "mean_io_u",
    # Keras de-duplicated and multi-output names
    "auc_1", "precision_2", "output_b_accuracy", "top5_acc", "val_accuracy", "val_auc_3",
    "recall_at_precision", "precision_at_recall",
]  # fmt: skip


@pytest.mark.parametrize("name", MINIMISED)
def test_minimised_metrics(name):
    assert metric_direction(name) == "min"


@pytest.mark.parametrize("name", MAXIMISED)
def test_maximised_metrics(name):
    assert metric_direction(name) == "max"


@pytest.mark.parametrize("name", ["my_score", "gain", "foo_1", "lossy_thing", "accuracy_gap"])
def test_unknown_direction_is_none(name):
    assert metric_direction(name) is None


def test_resolve_metric_implies_val_prefix():
    assert resolve_metric("loss") == ("val_loss", "min")
    assert resolve_metric("val_loss") == ("val_loss", "min")
    assert resolve_metric("accuracy", compiled_metric_names=["loss", "accuracy"]) == (
        "val_accuracy",
        "max",
    )
    # compiled names may carry val_ too (e.g. taken from a Keras history)
    assert resolve_metric("val_auc", None, ["val_loss", "val_auc"]) == ("val_auc", "max")
    assert resolve_metric("auc_1", None, ["loss", "auc", "auc_1"]) == ("val_auc_1", "max")


def test_mode_overrides_and_completes_the_table():
    assert resolve_metric("loss", "max") == ("val_loss", "max")
    assert resolve_metric("accuracy", mode="min") == ("val_accuracy", "min")
    assert resolve_metric("my_score", "max", ["loss", "my_score"]) == ("val_my_score", "max")
    assert resolve_metric("loss", "auto") == ("val_loss", "min")


def test_unknown_metric_lists_available_names():
    with pytest.raises(CerebroValueError) as info:
        resolve_metric("accuracy", None, ["loss", "auc", "binary_accuracy"])
    message = str(info.value)
    assert "'accuracy' is not a metric of the compiled model" in message
    assert "available: loss, auc, binary_accuracy" in message
    assert "did you mean 'binary_accuracy'?" in message
    with pytest.raises(CerebroValueError, match="available: loss"):
        resolve_metric("val_los", "min", ["val_loss"])


def test_unknown_direction_without_mode_asks_for_mode():
    with pytest.raises(CerebroValueError) as info:
        resolve_metric("my_score", None, ["loss", "my_score"])
    assert "'my_score'" in str(info.value)
    assert "mode='min' or mode='max'" in str(info.value)


@pytest.mark.parametrize(
    ("args", "error", "fragment"),
    [
        (("loss", "minimize"), CerebroValueError, "mode must be 'min', 'max' or None"),
        (("loss", "MIN"), CerebroValueError, "got 'MIN'"),
        ((None,), CerebroTypeError, "evaluation_metric must be a metric name (str), got None"),
        ((["loss"],), CerebroTypeError, "got ['loss'] (list)"),
        (("",), CerebroValueError, "evaluation_metric must name a metric"),
        (("val_",), CerebroValueError, "got 'val_'"),
    ],
)
def test_resolve_metric_argument_errors(args, error, fragment):
    with pytest.raises(error) as info:
        resolve_metric(*args)
    assert fragment in str(info.value)


def test_is_better():
    assert is_better(0.1, 0.2, "min") and not is_better(0.2, 0.1, "min")
    assert is_better(0.9, 0.8, "max") and not is_better(0.8, 0.9, "max")
    assert not is_better(0.5, 0.5, "min") and not is_better(0.5, 0.5, "max")  # strict
    assert is_better(0.5, None, "min") and is_better(-1e9, math.nan, "max")
    assert not is_better(None, 0.5, "min") and not is_better(math.nan, 0.5, "max")
    assert not is_better(None, None, "min")
    with pytest.raises(CerebroValueError, match="mode must be 'min' or 'max', got 'up'"):
        is_better(1, 2, "up")
