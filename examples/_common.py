"""What the search examples share: options, a local Spark session, the model, the report.

The examples (``grid_search.py``, ``random_search.py``, ``tpe_search.py``) differ only in the
searcher and its search space; everything else lives here so that each example shows just
that. Run an example, not this file.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
from typing import Any

# Executors must run this Python; set before pyspark is imported.
os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

#: The column the flights DataFrame predicts (see flights.py).
LABEL = "delayed"


def parse_args(
    doc: str | None, *, epochs: int = 2, models: int | None = None
) -> argparse.Namespace:
    """The examples' command-line options; ``--models`` only where the searcher takes it."""
    parser = argparse.ArgumentParser(
        description=doc, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=60000, help="flights to sample (0: all)")
    parser.add_argument("--epochs", type=int, default=epochs, help="epochs per model")
    if models is not None:
        parser.add_argument("--models", type=int, default=models, help="models to train")
    parser.add_argument("--workers", type=int, default=2, help="MOP workers (data partitions)")
    parser.add_argument("--seed", type=int, default=1, help="seed of configurations and split")
    parser.add_argument("--store", default=None, help="store folder (default: a temp folder)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    for noisy in ("py4j", "tensorflow", "absl"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    return args


def setup(args: argparse.Namespace, app_name: str) -> tuple[Any, Any, Any, Any]:
    """A local Spark session, a SparkBackend, a LocalStore and the flights DataFrame."""
    from flights import flights_dataframe
    from pyspark.sql import SparkSession

    from cerebro.backend import SparkBackend
    from cerebro.storage import LocalStore

    spark = (
        SparkSession.builder.master(f"local[{args.workers}]")
        .appName(app_name)
        .config("spark.driver.memory", "4g")
        .config("spark.sql.execution.arrow.pyspark.enabled", "true")
        .config("spark.ui.showConsoleProgress", "false")
        .getOrCreate()
    )
    spark.sparkContext.setLogLevel("ERROR")
    store = LocalStore(args.store or tempfile.mkdtemp(prefix=f"{app_name}-"))
    backend = SparkBackend(spark_context=spark.sparkContext, num_workers=args.workers)
    return spark, backend, store, flights_dataframe(spark, args.rows or None)


def estimator_gen_fn(params: dict[str, Any]) -> Any:
    """An MLP for the 9 standardised flight features; the searched params shape it.

    ``units`` (width of both hidden layers) and ``lr`` (Adam's learning rate) are required;
    ``dropout`` (after each hidden layer, default 0) and ``batch_size`` (default 256) optional.
    """
    import keras

    from cerebro.keras import SparkEstimator

    inputs = keras.Input(shape=(9,), name="features")
    x = inputs
    for _ in range(2):
        x = keras.layers.Dense(int(params["units"]), activation="relu")(x)
        if params.get("dropout"):
            x = keras.layers.Dropout(params["dropout"])(x)
    outputs = keras.layers.Dense(1, activation="sigmoid", name=LABEL)(x)
    return SparkEstimator(
        model=keras.Model(inputs, outputs),
        optimizer=keras.optimizers.Adam(params["lr"]),
        loss="binary_crossentropy",
        metrics=["accuracy"],
        batch_size=int(params.get("batch_size", 256)),
    )


def report(result: Any, store: Any) -> None:
    """Print the leaderboard, the best model's params and history, and where the logs are."""
    board = result.leaderboard()
    print(f"\nLeaderboard (ranked by final {result.metric_key}, {result.mode}imised):")
    print(board.drop(columns=["logs"]).to_string())
    best = result.models[result.best_model_id]
    print(f"\nBest model: {best.model_id}, {best.epochs} epochs, status {best.status}")
    print(f"  params:  {best.params}")
    for key, values in sorted(result.get_history().items()):
        print(f"  {key:>15}: {', '.join(f'{v:.4f}' for v in values)}")
    logs = store.local_path(store.get_logs_path(best.model_id)).rsplit("/", 1)[0]
    print(f"\nTensorBoard logs of every model: tensorboard --logdir {logs}")
    print(f"Store: {store.prefix_path}")
