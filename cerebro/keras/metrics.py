"""Combining per-partition metrics into one value per epoch (pure logic, no TensorFlow)."""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping, Sequence
from typing import Any

from cerebro.exceptions import CerebroValueError

__all__ = ["aggregate_metrics"]


def aggregate_metrics(results: Sequence[Mapping[str, Any]]) -> dict[str, float]:
    """Mean of each metric over partitions, weighted by the partitions' row counts.

    For metrics that Keras computes as a mean over samples (losses, accuracy, MAE, MSE) this is
    exactly the metric over all rows; for others (AUC, precision) it is the usual
    approximation. A NaN in any partition makes the aggregate NaN.

    Args:
        results: trainer results, each ``{"metrics": {name: value}, "rows": n, ...}``.

    Returns:
        ``{name: weighted mean}``.

    Raises:
        CerebroValueError: no results, a negative or zero total row count, or partitions that
            report different metric names.
    """
    if not results:
        raise CerebroValueError("aggregate_metrics needs at least one result, got []")
    names = set(results[0]["metrics"])
    for i, r in enumerate(results):
        if set(r["metrics"]) != names:
            raise CerebroValueError(
                f"results report different metrics: result 0 has {sorted(names)}, result {i} "
                f"has {sorted(r['metrics'])}"
            )
        rows = r["rows"]
        if isinstance(rows, bool) or not isinstance(rows, numbers.Integral) or rows < 0:
            raise CerebroValueError(f"result {i} has rows={rows!r}; rows must be an int >= 0")
    total = sum(int(r["rows"]) for r in results)
    if total == 0:
        raise CerebroValueError("results cover 0 rows in total; nothing to average")
    out: dict[str, float] = {}
    for name in sorted(names):
        acc = math.fsum(float(r["metrics"][name]) * int(r["rows"]) for r in results if r["rows"])
        out[name] = acc / total
    return out
