"""Which metric a search optimises, and in which direction.

Models are compared on a validation metric: ``evaluation_metric="loss"`` means the history key
``val_loss`` (the ``val_`` prefix is implied and may also be written). Whether lower or higher is
better is known for Keras' usual metrics: losses and errors are minimised, accuracy, AUC,
precision, recall and F1 are maximised; ``mode`` overrides the table and is required for a name
it does not know. The original Cerebro minimised every metric; this module is why accuracy is
now maximised.
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Iterable
from typing import Any

from cerebro.exceptions import CerebroTypeError, CerebroValueError

__all__ = ["metric_direction", "resolve_metric", "is_better", "check_mode"]

_VAL_PREFIX = "val_"

_MINIMIZED = frozenset(
    {
        "loss",
        "error",
        "mse",
        "mean_squared_error",
        "mae",
        "mean_absolute_error",
        "mape",
        "mean_absolute_percentage_error",
        "msle",
        "mean_squared_logarithmic_error",
        "rmse",
        "root_mean_squared_error",
        "crossentropy",
        "binary_crossentropy",
        "categorical_crossentropy",
        "sparse_categorical_crossentropy",
        "binary_focal_crossentropy",
        "categorical_focal_crossentropy",
        "kld",
        "kl_divergence",
        "kullback_leibler_divergence",
        "poisson",
        "hinge",
        "squared_hinge",
        "categorical_hinge",
        "logcosh",
        "log_cosh",
        "log_cosh_error",
        "huber",
        "false_positives",
        "false_negatives",
    }
)

_MAXIMIZED = frozenset(
    {
        "accuracy",
        "acc",
        "binary_accuracy",
        "categorical_accuracy",
        "sparse_categorical_accuracy",
        "top_k_categorical_accuracy",
        "sparse_top_k_categorical_accuracy",
        "auc",
        "precision",
        "recall",
        "f1",
        "f1_score",
        "fbeta_score",
        "r2",
        "r2_score",
        "iou",
        "io_u",
        "mean_io_u",
        "binary_io_u",
        "one_hot_io_u",
        "one_hot_mean_io_u",
        "cosine_similarity",
        "precision_at_recall",
        "recall_at_precision",
        "sensitivity_at_specificity",
        "specificity_at_sensitivity",
        "true_positives",
        "true_negatives",
    }
)

# Longest first, so "binary_crossentropy" wins over "crossentropy" in suffix matching.
_KNOWN = sorted(
    [(name, "min") for name in _MINIMIZED] + [(name, "max") for name in _MAXIMIZED],
    key=lambda item: -len(item[0]),
)
_KERAS_DEDUP = re.compile(r"_\d+$")  # Keras names a second AUC "auc_1"


def check_mode(mode: Any, name: str = "mode") -> str | None:
    """Return ``mode`` if it is ``"min"``, ``"max"`` or None (``"auto"`` is None); else raise."""
    if mode is None or mode == "auto":
        return None
    if mode not in ("min", "max"):
        raise CerebroValueError(f"{name} must be 'min', 'max' or None (auto), got {mode!r}")
    return mode


def _strip_val(name: str) -> str:
    return name[len(_VAL_PREFIX) :] if name.startswith(_VAL_PREFIX) else name


def metric_direction(name: str) -> str | None:
    """``"min"`` or ``"max"`` for a known Keras metric name, else None.

    Matches the name itself (without ``val_``), the name without Keras' ``_1`` de-duplication
    suffix, and names that end in a known metric, as multi-output models report them
    (``output_a_accuracy``, ``dense_1_loss``).
    """
    base = _strip_val(name.lower())
    for candidate in (base, _KERAS_DEDUP.sub("", base)):
        for known, direction in _KNOWN:
            if candidate == known or candidate.endswith("_" + known):
                return direction
    return None


def resolve_metric(
    evaluation_metric: str,
    mode: str | None = None,
    compiled_metric_names: Iterable[str] | None = None,
) -> tuple[str, str]:
    """The history key and direction of the metric a search compares models on.

    Args:
        evaluation_metric: a metric name as Keras reports it (``"loss"``, ``"accuracy"``,
            ``"auc"``); ``val_`` is implied and may be written (``"val_loss"``).
        mode: ``"min"`` or ``"max"`` to override the known direction; None (or ``"auto"``)
            to look it up.
        compiled_metric_names: the names the compiled model reports (with or without
            ``val_``); None skips the check that ``evaluation_metric`` is one of them.

    Returns:
        ``(history_key, direction)``, e.g. ``("val_accuracy", "max")``.

    Raises:
        CerebroTypeError: ``evaluation_metric`` is not a string.
        CerebroValueError: the metric is not among ``compiled_metric_names``, ``mode`` is
            invalid, or the direction is unknown and ``mode`` was not given.
    """
    if not isinstance(evaluation_metric, str):
        raise CerebroTypeError(
            f"evaluation_metric must be a metric name (str), got {evaluation_metric!r} "
            f"({type(evaluation_metric).__name__})"
        )
    base = _strip_val(evaluation_metric.strip())
    if not base:
        raise CerebroValueError(
            f"evaluation_metric must name a metric such as 'loss', got {evaluation_metric!r}"
        )
    mode = check_mode(mode)
    if compiled_metric_names is not None:
        available = list(dict.fromkeys(_strip_val(n) for n in compiled_metric_names))
        if base not in available:
            close = difflib.get_close_matches(base, available, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise CerebroValueError(
                f"evaluation_metric {evaluation_metric!r} is not a metric of the compiled model; "
                f"available: {', '.join(available) or '(none)'} (each is evaluated on the "
                f"validation data as val_<name>){hint}"
            )
    direction = mode or metric_direction(base)
    if direction is None:
        raise CerebroValueError(
            f"cannot tell whether evaluation_metric {evaluation_metric!r} should be minimised or "
            "maximised; pass mode='min' or mode='max'"
        )
    return _VAL_PREFIX + base, direction


def is_better(a: float | None, b: float | None, mode: str) -> bool:
    """Whether value ``a`` is strictly better than ``b`` under ``mode``.

    A missing or NaN ``a`` is never better; any real ``a`` is better than a missing or NaN ``b``.

    Raises:
        CerebroValueError: ``mode`` is not ``"min"`` or ``"max"``.
    """
    if mode not in ("min", "max"):
        raise CerebroValueError(f"mode must be 'min' or 'max', got {mode!r}")
    if a is None or math.isnan(a):
        return False
    if b is None or math.isnan(b):
        return True
    return a < b if mode == "min" else a > b
