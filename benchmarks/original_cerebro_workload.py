"""The MOP benchmark's workload run with the original Cerebro (``cerebro-dl``), for comparison.

Run by ``mop_benchmark.py --compare-original PYTHON`` with PYTHON from a separate environment
where ``cerebro-dl==1.1.1`` is installed (it needs TensorFlow <= 2.15 with Keras 2, pyspark 3.x;
see benchmarks/README.md). It must never run in this project's environment: both packages are
named ``cerebro``. Prints one line ``ORIGINAL {json}``.

    python original_cerebro_workload.py '{"rows": ..., "epochs": ..., "workers": ..., ...}'
"""

from __future__ import annotations

import json
import os
import sys
import time

os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def main() -> None:
    cfg = json.loads(sys.argv[1])
    if cfg.get("data", "synthetic") != "synthetic":
        raise SystemExit("the comparison runs on the synthetic data only")
    from _bench import SPACE, build_model, synthetic_dataframe
    from pyspark.sql import SparkSession

    import cerebro  # the original package, from the other environment
    from cerebro.backend import SparkBackend
    from cerebro.keras import SparkEstimator
    from cerebro.storage import LocalStore
    from cerebro.tune import GridSearch, hp_choice

    if os.path.dirname(os.path.dirname(os.path.abspath(cerebro.__file__))) == os.path.dirname(
        os.path.dirname(os.path.abspath(__file__))
    ):
        raise SystemExit("this script must run with the original cerebro-dl, not this project")
    import tensorflow as tf

    if not hasattr(tf.keras.optimizers.Optimizer, "get_weights"):
        # cerebro-dl 1.1.1 was written for TF <= 2.10, whose optimizers had get_weights(); it
        # calls it on a fresh optimizer before compiling (an empty list there). TF >= 2.11
        # (the only ones for Python 3.11) dropped it, and the legacy optimizers fail its type
        # check, so give the new optimizer the old answer for a fresh optimizer.
        tf.keras.optimizers.Optimizer.get_weights = lambda self: []
    w = cfg["workers"]
    spark = (
        SparkSession.builder.master(f"local[{w}]")
        .appName("original-cerebro-benchmark")
        .config("spark.ui.enabled", "false")
        .config("spark.driver.memory", "3g")
        .getOrCreate()
    )
    spark.sparkContext.setLogLevel("ERROR")

    def estimator_gen_fn(params):
        import tensorflow as tf

        return SparkEstimator(
            model=build_model(params, cfg["num_features"]),
            optimizer=tf.keras.optimizers.Adam(params["lr"]),
            loss="binary_crossentropy",
            metrics=["accuracy"],
            batch_size=params["batch_size"],
        )

    try:
        store = LocalStore(cfg["store"])
        backend = SparkBackend(spark_context=spark.sparkContext, num_workers=w, verbose=0)
        df = synthetic_dataframe(spark, cfg["rows"])
        t0 = time.perf_counter()
        backend.prepare_data(store, df, validation=0.25)
        prepare_s = time.perf_counter() - t0
        search = GridSearch(
            backend,
            store,
            estimator_gen_fn,
            {k: hp_choice(v) for k, v in SPACE.items()},
            cfg["epochs"],
            evaluation_metric="loss",
            validation=0.25,
            feature_columns=["features"],
            label_columns=["label"],
            verbose=0,
        )
        t0 = time.perf_counter()
        result = search.fit_on_prepared_data()
        makespan = time.perf_counter() - t0
        val_loss = {run_id: metrics["val_loss"][-1] for run_id, metrics in result.metrics.items()}
    finally:
        spark.stop()
    import pyspark
    import tensorflow as tf

    out = {
        "makespan_s": makespan,
        "prepare_s": prepare_s,
        "final_val_loss": val_loss,
        "versions": {
            "cerebro-dl": getattr(cerebro, "__version__", "1.1.1"),
            "tensorflow": tf.__version__,
            "pyspark": pyspark.__version__,
        },
    }
    print("ORIGINAL " + json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
