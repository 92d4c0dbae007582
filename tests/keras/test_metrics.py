"""aggregate_metrics: per-partition metrics combined into one value, weighted by rows."""

from __future__ import annotations

import math

import numpy as np
import pytest

from cerebro.exceptions import CerebroValueError
from cerebro.keras import aggregate_metrics


def test_weighted_mean_equals_the_metric_over_all_rows():
    rng = np.random.default_rng(0)
    errors = rng.normal(size=1000)
    cuts = [0, 100, 450, 1000]  # unequal partitions
    results = [
        {"metrics": {"mae": float(np.abs(e).mean()), "mse": float((e**2).mean())}, "rows": len(e)}
        for e in (errors[a:b] for a, b in zip(cuts, cuts[1:]))
    ]
    out = aggregate_metrics(results)
    assert out["mae"] == pytest.approx(np.abs(errors).mean(), rel=1e-12)
    assert out["mse"] == pytest.approx((errors**2).mean(), rel=1e-12)
    # An unweighted mean would differ: the weighting matters.
    assert out["mae"] != pytest.approx(np.mean([r["metrics"]["mae"] for r in results]), rel=1e-4)


def test_numpy_row_counts_zero_row_partitions_and_nan():
    out = aggregate_metrics(
        [{"metrics": {"loss": 2.0}, "rows": np.int64(3)}, {"metrics": {"loss": 9.0}, "rows": 0}]
    )
    assert out == {"loss": 2.0}
    nan = aggregate_metrics(
        [{"metrics": {"loss": math.nan}, "rows": 1}, {"metrics": {"loss": 1.0}, "rows": 1}]
    )
    assert math.isnan(nan["loss"])


@pytest.mark.parametrize(
    "results, pattern",
    [
        ([], r"at least one result, got \[\]"),
        ([{"metrics": {"loss": 1.0}, "rows": 0}], "0 rows in total"),
        ([{"metrics": {"loss": 1.0}, "rows": -2}], r"rows=-2; rows must be an int >= 0"),
        (
            [{"metrics": {"loss": 1.0}, "rows": 1}, {"metrics": {"mae": 1.0}, "rows": 1}],
            r"result 0 has \['loss'\], result 1 has \['mae'\]",
        ),
    ],
)
def test_bad_results(results, pattern):
    with pytest.raises(CerebroValueError, match=pattern):
        aggregate_metrics(results)
