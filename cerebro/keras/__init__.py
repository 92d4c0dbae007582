"""Keras on Cerebro: the estimator users return, the worker-side trainer, checkpoints, logs.

``import cerebro.keras`` is cheap: Keras, TensorFlow and TensorBoard are imported only when a
function that needs them runs.
"""

from typing import TYPE_CHECKING, Any

from cerebro.keras.checkpoint import (
    create_initial_checkpoint,
    load_checkpoint,
    load_state,
    save_checkpoint,
)
from cerebro.keras.estimator import SparkEstimator, WorkerSpec
from cerebro.keras.metrics import aggregate_metrics
from cerebro.keras.tensorboard import (
    TensorBoardLogger,
    close_loggers,
    write_epoch_scalars,
    write_hparams,
)
from cerebro.keras.trainer import KerasTrainer, configure_threads, shuffle_seed

if TYPE_CHECKING:
    from cerebro.keras.model import SparkModel

__all__ = [
    "SparkEstimator",
    "WorkerSpec",
    "KerasTrainer",
    "configure_threads",
    "shuffle_seed",
    "create_initial_checkpoint",
    "save_checkpoint",
    "load_checkpoint",
    "load_state",
    "aggregate_metrics",
    "TensorBoardLogger",
    "write_epoch_scalars",
    "write_hparams",
    "close_loggers",
    "SparkModel",
]


def __getattr__(name: str) -> Any:
    # Lazy: SparkModel subclasses pyspark.ml.Transformer; `import cerebro.keras` must not load it.
    if name == "SparkModel":
        from cerebro.keras.model import SparkModel

        return SparkModel
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
