"""Throughput of ``SparkModel.transform`` vs. ``model.predict`` on rows collected to the driver.

A 8 -> 64 -> 64 -> 1 MLP predicts 100,000 rows of an ``array<double>`` column on ``local[2]``:

* transform (cold): the first run, which also starts the Python workers, imports TensorFlow in
  them and builds the model once per worker;
* transform (warm): the same again (workers and their cached model reused), written to Spark's
  ``noop`` sink so nothing is collected;
* a pandas UDF that returns zeros: the cost of Spark's Arrow round trip without any model;
* driver: ``df.select(features).toPandas()`` (collect), then ``model.predict`` on the driver.

Run: ``python benchmarks/sparkmodel_transform.py [rows]`` (prints a Markdown table; the warm
transform and the driver predict are medians of 3).
"""

from __future__ import annotations

import os
import statistics
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
os.environ.setdefault("PYSPARK_PYTHON", sys.executable)

from collections.abc import Iterator  # noqa: E402

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from pyspark.sql import SparkSession  # noqa: E402
from pyspark.sql import functions as F  # noqa: E402
from pyspark.sql.functions import pandas_udf  # noqa: E402

from cerebro.keras import SparkModel  # noqa: E402

ROWS = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
WIDTH = 8


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    spark = (
        SparkSession.builder.master("local[2]")
        .config("spark.ui.enabled", "false")
        .config("spark.driver.memory", "2g")
        .config("spark.sql.execution.arrow.pyspark.enabled", "true")
        .getOrCreate()
    )
    spark.sparkContext.setLogLevel("ERROR")
    df = (
        spark.range(ROWS, numPartitions=4)
        .select("id", F.array(*[F.rand(seed=i) for i in range(WIDTH)]).alias("features"))
        .cache()
    )
    df.count()

    inputs = keras.Input(shape=(WIDTH,), name="features")
    hidden = keras.layers.Dense(64, activation="relu")(inputs)
    hidden = keras.layers.Dense(64, activation="relu")(hidden)
    model = keras.Model(inputs, keras.layers.Dense(1, name="label")(hidden))
    sm = SparkModel(model, feature_columns=["features"], label_columns=["label"])

    def run_transform() -> None:
        sm.transform(df).write.format("noop").mode("overwrite").save()

    cold = timed(run_transform)
    warm = statistics.median(timed(run_transform) for _ in range(3))

    # The same Arrow round trip with no model: what Spark's pandas UDF path costs by itself.
    def zeros(batches: Iterator[pd.Series]) -> Iterator[pd.DataFrame]:
        for batch in batches:
            yield pd.DataFrame({"o": np.zeros(len(batch))})

    no_model = pandas_udf(zeros, "struct<o: double>")

    def run_no_model() -> None:
        df.select("*", no_model("features").alias("t")).write.format("noop").mode(
            "overwrite"
        ).save()

    run_no_model()
    plumbing = statistics.median(timed(run_no_model) for _ in range(3))

    collect_times, predict_times = [], []
    for _ in range(3):
        start = time.perf_counter()
        x = np.stack(df.select("features").toPandas()["features"].to_numpy()).astype("float32")
        collect_times.append(time.perf_counter() - start)
        start = time.perf_counter()
        model.predict(x, batch_size=1024, verbose=0)
        predict_times.append(time.perf_counter() - start)
    collect, predict = statistics.median(collect_times), statistics.median(predict_times)
    spark.stop()

    print(
        f"{ROWS} rows, {WIDTH} features, {model.count_params()} parameters, local[2], "
        f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs\n"
    )
    print("| path | seconds | rows/s |")
    print("|---|---:|---:|")
    for name, seconds in (
        ("SparkModel.transform, cold (workers start, TF import, model build)", cold),
        ("SparkModel.transform, warm", warm),
        ("pandas UDF without a model (Spark/Arrow overhead alone)", plumbing),
        ("driver: collect with toPandas", collect),
        ("driver: model.predict(batch_size=1024)", predict),
        ("driver: collect + predict", collect + predict),
    ):
        print(f"| {name} | {seconds:.2f} | {ROWS / seconds:,.0f} |")


if __name__ == "__main__":
    main()
