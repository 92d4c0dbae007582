"""Backends: run Model Hopper Parallelism training on a cluster."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__all__ = ["Backend", "SparkBackend"]

if TYPE_CHECKING:
    from cerebro.backend._base import Backend
    from cerebro.backend.spark.backend import SparkBackend


def __getattr__(name: str) -> Any:
    # Lazy: importing SparkBackend pulls in pyspark, which `import cerebro.backend` must not.
    if name == "SparkBackend":
        from cerebro.backend.spark.backend import SparkBackend

        return SparkBackend
    if name == "Backend":
        from cerebro.backend._base import Backend

        return Backend
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
