"""A small end-to-end model selection, run in its own process by the tests.

Tests that need their own SparkContext (a ``local-cluster`` master, Ctrl-C in the driver) run
this script as a subprocess; it prints one JSON line starting with ``RESULT`` that the test reads.

    python e2e_script.py --master local-cluster[2,1,1024] --store /tmp/s [--interrupt-after 5]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
import time

os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def make_df(spark, rows: int, seed: int = 0):
    import numpy as np

    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, 6)).astype("float64")
    y = (x @ np.array([1.0, -2.0, 0.5, 0.0, 1.5, -1.0]) > 0).astype("int64")
    data = [(x[i].tolist(), int(y[i])) for i in range(rows)]
    return spark.createDataFrame(data, "features array<double>, label long")


def estimator_gen_fn(params):
    import keras

    from cerebro.keras import SparkEstimator

    inputs = keras.Input(shape=(6,), name="features")
    h = keras.layers.Dense(params["units"], activation="relu")(inputs)
    outputs = keras.layers.Dense(1, activation="sigmoid", name="label")(h)
    return SparkEstimator(
        model=keras.Model(inputs, outputs),
        optimizer=keras.optimizers.Adam(params["lr"]),
        loss="binary_crossentropy",
        metrics=["accuracy"],
        batch_size=64,
    )


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False


def _ready_workers(backend) -> dict:
    """Block until every worker has loaded its data and is alive; return their info."""
    while True:
        info = backend.worker_info()
        if info and all("train_rows" in w and _alive(w["pid"]) for w in info.values()):
            return info
        time.sleep(0.05)


def committed_hops(store) -> int:
    """Training hops committed so far, summed over the models' state files."""
    runs, total = store.get_runs_path(), 0
    if store.exists(runs):
        for name in store.listdir(runs):
            state = store.get_run_state_path(name) if not name.startswith("_") else None
            if state and store.exists(state):
                try:
                    total += store.read_json(state)["hops"]
                except Exception:  # being replaced right now
                    pass
    return total


def _killer(backend, store, hops: list[int], killed: list) -> None:
    """SIGKILL a worker process once the run has committed each number of training hops
    (progress, not time, so the moment does not depend on the machine's speed)."""
    for i, at in enumerate(sorted(hops)):
        info = _ready_workers(backend)
        while committed_hops(store) < at:
            time.sleep(0.02)
        info = _ready_workers(backend)
        victim = info[i % len(info)]
        os.kill(victim["pid"], signal.SIGKILL)
        killed.append(victim["pid"])
        while _alive(victim["pid"]):
            time.sleep(0.02)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--master", default="local[2]")
    p.add_argument("--store", required=True)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--rows", type=int, default=2000)
    p.add_argument("--interrupt-after", type=float, default=None)
    p.add_argument("--resume", action="store_true")
    p.add_argument("--max-restarts", type=int, default=5)
    p.add_argument("--experiment", default="e2e")
    p.add_argument(
        "--kill-worker-after-hops",
        type=int,
        nargs="*",
        default=[],
        help="numbers of committed training hops after which to SIGKILL a worker process",
    )
    args = p.parse_args()

    from pyspark.sql import SparkSession

    from cerebro.backend import SparkBackend
    from cerebro.storage import LocalStore
    from cerebro.tune import GridSearch, hp_choice

    spark = (
        SparkSession.builder.master(args.master)
        .config("spark.ui.enabled", "false")
        .config("spark.executor.memory", "1g")
        .getOrCreate()
    )
    spark.sparkContext.setLogLevel("ERROR")
    store = LocalStore(args.store)
    backend = SparkBackend(
        spark.sparkContext,
        num_workers=args.workers,
        verbose=0,
        max_worker_restarts=args.max_restarts,
    )
    search = GridSearch(
        backend,
        store,
        estimator_gen_fn,
        {"units": hp_choice([4, 16]), "lr": hp_choice([1e-2, 3e-2])},
        num_epochs=args.epochs,
        evaluation_metric="accuracy",
        feature_columns=["features"],
        label_columns=["label"],
        seed=3,
        verbose=0,
        experiment_name=args.experiment,
        resume=args.resume,
    )
    df = make_df(spark, args.rows)
    out: dict = {"killed": []}
    if args.kill_worker_after_hops:
        threading.Thread(
            target=_killer,
            args=(backend, store, args.kill_worker_after_hops, out["killed"]),
            daemon=True,
        ).start()
    if args.interrupt_after is not None:
        backend.prepare_data(
            store, df, validation=0.25, feature_columns=["features"], label_columns=["label"]
        )
        timer = threading.Timer(args.interrupt_after, os.kill, (os.getpid(), signal.SIGINT))
        timer.start()
        t0 = time.monotonic()
        try:
            search.fit_on_prepared_data()
            out["interrupted"] = False
        except KeyboardInterrupt:
            out["interrupted"] = True
        out["stop_seconds"] = time.monotonic() - t0 - args.interrupt_after
    else:
        result = search.fit(df)
        out["best"] = result.best_model_id
        out["history"] = result.get_all_model_history()
    out["restarts"] = backend.worker_restarts
    out["active_jobs"] = list(spark.sparkContext.statusTracker().getActiveJobsIds())
    out["threads"] = sorted(t.name for t in threading.enumerate() if t.name.startswith("cerebro"))
    print("RESULT " + json.dumps(out), flush=True)
    spark.stop()


if __name__ == "__main__":
    main()
