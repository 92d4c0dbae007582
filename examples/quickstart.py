"""Quick start: select among 4 Keras MLPs on the NYC flights data with local Spark.

Run it with ``bash scripts/quickstart.sh`` (sets up .venv first) or
``.venv/bin/python examples/quickstart.py [--rows N] [--epochs E] [--workers W]``.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile

os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


def estimator_gen_fn(params):
    import keras

    from cerebro.keras import SparkEstimator

    inputs = keras.Input(shape=(9,), name="features")
    x = keras.layers.Dense(params["units"], activation="relu")(inputs)
    x = keras.layers.Dense(params["units"], activation="relu")(x)
    outputs = keras.layers.Dense(1, activation="sigmoid", name="delayed")(x)
    return SparkEstimator(
        model=keras.Model(inputs, outputs),
        optimizer=keras.optimizers.Adam(params["lr"]),
        loss="binary_crossentropy",
        metrics=["accuracy"],
        batch_size=params["batch_size"],
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=None, help="sample this many flights")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--store", default=None, help="store folder (default: a temp folder)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    for noisy in ("py4j", "tensorflow", "absl"):
        logging.getLogger(noisy).setLevel(logging.WARNING)

    from flights import flights_dataframe
    from pyspark.sql import SparkSession

    from cerebro.backend import SparkBackend
    from cerebro.storage import LocalStore
    from cerebro.tune import GridSearch, hp_choice

    spark = (
        SparkSession.builder.master(f"local[{args.workers}]")
        .appName("cerebro-quickstart")
        .config("spark.driver.memory", "4g")
        .config("spark.sql.execution.arrow.pyspark.enabled", "true")
        .config("spark.ui.showConsoleProgress", "false")
        .getOrCreate()
    )
    spark.sparkContext.setLogLevel("ERROR")
    store_dir = args.store or tempfile.mkdtemp(prefix="cerebro-quickstart-")
    store = LocalStore(store_dir)
    backend = SparkBackend(spark_context=spark.sparkContext, num_workers=args.workers)

    df = flights_dataframe(spark, args.rows)
    search = GridSearch(
        backend,
        store,
        estimator_gen_fn,
        {
            "units": hp_choice([16, 64]),
            "lr": hp_choice([1e-3, 1e-2]),
            "batch_size": hp_choice([256]),
        },
        num_epochs=args.epochs,
        evaluation_metric="accuracy",
        validation=0.25,
        feature_columns=["features"],
        label_columns=["delayed"],
        seed=1,
    )
    result = search.fit(df)

    board = result.leaderboard()
    print("\nLeaderboard (ranked by final validation accuracy):")
    print(board.drop(columns=["logs"]).to_string())
    print(f"\nBest model: {result.best_model_id}")
    logs = store.local_path(store.get_logs_path(result.best_model_id)).rsplit("/", 1)[0]
    print(f"TensorBoard logs of every model: tensorboard --logdir {logs}")
    print(f"Store: {store_dir}")
    spark.stop()


if __name__ == "__main__":
    main()
