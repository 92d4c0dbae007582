"""Bad input across the public API, as a user meets it: a clear error, no Spark job, no change.

Each case builds one bad input (a bad argument, a broken estimator_gen_fn, bad data, a corrupt
file in the store), then the test

* snapshots the module's prepared store and the case's own folder (every file with its size and
  mtime),
* calls the public API and checks that it raises the case's CerebroError subclass with a message
  that holds the key part (the argument and the bad value),
* checks that no Spark job ran (or, for bad *values in the data*, only prepare_data's one check
  pass, which is how they are found), and
* checks that both snapshots are unchanged: bad input never writes to a store.

docs/errors.md holds the same table for users; a test checks that every case is listed there
with its error class and message. (That a model whose loss becomes NaN is marked failed while
the others finish is tested in tests/tune/test_search_e2e.py.)
"""

from __future__ import annotations

import io
import json
import os
import shutil
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from cerebro.backend import SparkBackend
from cerebro.exceptions import (
    CerebroError,
    CerebroTypeError,
    CerebroValueError,
    ClusterCapacityError,
    ColumnError,
    DatasetMismatchError,
    StoreError,
)
from cerebro.storage import HDFSStore, LocalStore, Store
from cerebro.tune import (
    GridSearch,
    GridSuggester,
    PatienceStopping,
    RandomSearch,
    TPESearch,
    hp_choice,
    hp_loguniform,
    hp_uniform,
)

DOCS = Path(__file__).resolve().parents[1] / "docs" / "errors.md"
W = 2  # workers
ROWS = 200
LR = {"lr": hp_choice([0.1])}
SCHEMA = "features array<double>, age double, label double"


def make_rows(rows: int = ROWS, seed: int = 0) -> list[tuple]:
    """``features`` (4 doubles), ``age`` (a double) and ``label`` (0/1 from a linear rule)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, 5))
    y = (x @ np.array([1.0, -1.0, 0.5, 0.0, 2.0]) > 0).astype(float)
    return [(x[i, :4].tolist(), float(x[i, 4]), float(y[i])) for i in range(rows)]


def make_model(
    *,
    age_input: str = "age",
    features_shape: tuple[int, ...] = (4,),
    outputs: tuple[str, ...] = ("label",),
    output_shape: tuple[int, ...] = (1,),
) -> Any:
    """A functional model reading ``features`` and ``age``; the defaults fit the data."""
    import keras

    features = keras.Input(shape=features_shape, name="features")
    age = keras.Input(shape=(1,), name=age_input)
    hidden = keras.layers.Dense(4, activation="relu")(
        keras.layers.Concatenate()([keras.layers.Flatten()(features), age])
    )
    outs = []
    for name in outputs:
        dense = keras.layers.Dense(int(np.prod(output_shape)))(hidden)
        outs.append(keras.layers.Reshape(output_shape, name=name)(dense))
    return keras.Model([features, age], outs if len(outs) > 1 else outs[0])


def gen_with(model: dict[str, Any] | None = None, **estimator: Any) -> Callable:
    """An estimator_gen_fn whose model takes ``make_model(**model)`` and the other arguments
    of SparkEstimator from ``estimator`` (defaults: Adam by name, MSE, batch size 32)."""

    def gen(params: dict[str, Any]) -> Any:
        from cerebro.keras import SparkEstimator

        args = {"optimizer": "adam", "loss": "mse", "batch_size": 32, **estimator}
        return SparkEstimator(make_model(**(model or {})), **args)

    return gen


def raising_gen(params: dict[str, Any]) -> Any:
    return params["lr"] / 0


def keras_model_gen(params: dict[str, Any]) -> Any:
    return make_model()


def none_gen(params: dict[str, Any]) -> Any:
    return None


def jobs_started(spark) -> int:
    """How many Spark jobs this SparkContext has started so far.

    Read from the DAG scheduler's job counter: PySpark's status tracker lists only the jobs of
    known job groups, and a Cerebro job may run in a group of its own.
    """
    return int(spark.sparkContext._jsc.sc().dagScheduler().numTotalJobs())


def snapshot(root: str) -> dict[str, Any] | None:
    """Every file and folder under ``root`` (hidden ones too) with its size and mtime."""
    if not os.path.exists(root):
        return None
    out: dict[str, Any] = {}
    for dirpath, dirs, files in os.walk(root):
        for name in dirs + files:
            path = os.path.join(dirpath, name)
            st = os.stat(path)
            out[os.path.relpath(path, root)] = (
                "dir" if name in dirs else (st.st_size, st.st_mtime_ns)
            )
    return out


@dataclass
class Ctx:
    """What a case builds its bad input from."""

    spark: Any
    backend: SparkBackend
    store: LocalStore  # the module's prepared store: shared, must never change
    tmp: Path  # the case's own folder
    details: dict[str, str] = field(default_factory=dict)  # fills <name> in the excerpt

    def df(self, rows: list[tuple] | None = None, schema: str = SCHEMA) -> Any:
        return self.spark.createDataFrame(make_rows() if rows is None else rows, schema)

    def copy_of_store(self) -> LocalStore:
        """A copy of the prepared store, for cases that break a file in it."""
        dst = self.tmp / "copy"
        shutil.copytree(self.store.local_path(self.store.prefix_path), dst)
        return LocalStore(str(dst))

    def fresh_store(self) -> LocalStore:
        """A store whose folder does not exist yet."""
        return LocalStore(str(self.tmp / "fresh"))

    def search(
        self,
        cls: type = GridSearch,
        *,
        store: Store | None = None,
        backend: Any = None,
        gen: Callable | None = None,
        space: Any = None,
        **kwargs: Any,
    ) -> Any:
        """A search (GridSearch by default) over ``LR`` with a good estimator_gen_fn."""
        args = {"num_epochs": 1, "verbose": 0, "experiment_name": "bad", **kwargs}
        return cls(
            backend or self.backend,
            store or self.store,
            gen_with() if gen is None else gen,
            LR if space is None else space,
            **args,
        )

    def prepare(self, df: Any, store: Store | None = None, **kwargs: Any) -> Callable:
        args = {"feature_columns": ["features", "age"], "label_columns": ["label"], **kwargs}
        return lambda: self.backend.prepare_data(store or self.store, df, **args)


@dataclass(frozen=True)
class Case:
    """One bad input: where it goes in, what it is, and the error a user must get."""

    entry: str  # the API entry (first column of the docs table)
    bad: str  # the bad input, in words
    build: Callable[[Ctx], Callable[[], Any]]  # sets the input up; returns the call to make
    error: type[CerebroError]
    excerpt: str  # literal parts of the message, split by " ... "; <name> from Ctx.details
    jobs: str = "none"  # "none": no Spark job at all; "check": only prepare_data's check pass


# ---------------------------------------------------------------------- case builders
def _prefix_is_a_file(ctx: Ctx) -> LocalStore:
    path = ctx.tmp / "plain-file"
    path.write_text("not a folder")
    store = LocalStore(str(path))
    ctx.details["prefix"] = store.prefix_path
    return store


def _prepared_store(ctx: Ctx) -> LocalStore:
    ctx.details["prefix"] = ctx.store.prefix_path
    return ctx.store


def _corrupt_metadata(ctx: Ctx, content: str | None = None) -> LocalStore:
    store = ctx.copy_of_store()
    url = store.get_data_metadata_path()
    if content is None:  # a real metadata file whose row counts no longer add up
        meta = store.read_json(url)
        rows = meta["splits"]["train"]["total_rows"]
        meta["splits"]["train"]["total_rows"] = rows + 1
        content = json.dumps(meta)
        ctx.details.update(rows=str(rows), edited=str(rows + 1))
    store.write_text(url, content)
    ctx.details["meta"] = url
    return store


def _experiment_record(ctx: Ctx, record: dict[str, Any] | str) -> LocalStore:
    store = ctx.copy_of_store()
    url = store.get_experiment_path("bad")
    if isinstance(record, str):
        store.write_text(url, record)
    else:
        store.write_json(url, record)
    ctx.details["record"] = url
    return store


def _resume_with_corrupt_state(ctx: Ctx) -> Callable:
    store = ctx.copy_of_store()
    search = ctx.search(
        store=store, resume=True, feature_columns=["features", "age"], label_columns=["label"]
    )
    store.write_json(
        store.get_experiment_path("bad"),
        {
            "name": "bad",
            "config": search.config(),
            "suggester": GridSuggester(search.search_space, seed=None).state_dict(),
            "models": {"bad-000": 0},
            "created": 0.0,
            "updated": 0.0,
        },
    )
    state = store.get_run_state_path("bad-000")
    store.write_text(state, '{"epochs_done": 1, "hist')  # cut off mid-write by hand
    ctx.details["state"] = state
    return search.fit_on_prepared_data


def _checkpoint(ctx: Ctx, content: bytes, *, transform: bool) -> Callable:
    store = ctx.copy_of_store()
    url = store.get_checkpoint_path("m-001")
    store.write_bytes(url, content)
    ctx.details["ckpt"] = url

    def call() -> Any:
        from cerebro.keras import SparkModel

        model = SparkModel.from_checkpoint(
            store, url, feature_columns=["features", "age"], label_columns=["label"]
        )
        return model.transform(ctx.df()) if transform else model

    return call


def _zip_without_a_model() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("notes.txt", "a zip archive, but not a Keras model")
    return buf.getvalue()


def _saved_model(ctx: Ctx, damage: str) -> Callable:
    from cerebro.keras import SparkModel
    from cerebro.keras.model import CONFIG_FILE, MODEL_FILE

    path = ctx.tmp / "saved"
    SparkModel(make_model(), feature_columns=["features", "age"], label_columns=["label"]).save(
        str(path)
    )
    model_file, config_file = path / MODEL_FILE, path / CONFIG_FILE
    if damage == "model":  # truncated: the checksum in the config no longer matches
        model_file.write_bytes(model_file.read_bytes()[:1000])
    else:
        config_file.write_text(config_file.read_text()[:20])
    url = LocalStore(str(path)).prefix_path
    ctx.details.update(model=f"{url}/{MODEL_FILE}", config=f"{url}/{CONFIG_FILE}")
    return lambda: SparkModel.load(str(path))


def _transform_misspelt(ctx: Ctx) -> Callable:
    from cerebro.keras import SparkModel

    model = SparkModel(make_model(), feature_columns=["featurs", "age"], label_columns=["label"])
    return lambda: model.transform(ctx.df())


def _with_value(index: int, value: Any, row: int = 7) -> list[tuple]:
    rows = [list(r) for r in make_rows()]
    rows[row][index] = value
    return [tuple(r) for r in rows]


def _nan_in_features() -> list[tuple]:
    rows = make_rows()
    features, age, label = rows[3]
    rows[3] = ([features[0], float("nan"), features[2], features[3]], age, label)
    return rows


def _null_labels() -> list[tuple]:
    rows = make_rows()
    for i in (1, 50, 99):
        rows[i] = (*rows[i][:2], None)
    return rows


def _pandas_frame() -> Any:
    import pandas as pd

    rows = make_rows(10)
    return pd.DataFrame(rows, columns=["features", "age", "label"])


def _small_cluster_search(ctx: Ctx) -> Callable:
    backend = SparkBackend(ctx.spark.sparkContext, num_workers=64, start_timeout=1, verbose=0)
    return ctx.search(backend=backend).fit_on_prepared_data


# ---------------------------------------------------------------------- the cases
CASES = [
    # cerebro.storage ------------------------------------------------------------------------
    Case(
        "LocalStore(prefix_path)",
        "an empty prefix",
        lambda ctx: lambda: LocalStore(""),
        CerebroValueError,
        "prefix_path must be a non-empty path or URL, got ''",
    ),
    Case(
        "LocalStore(prefix_path)",
        "an HDFS URL",
        lambda ctx: lambda: LocalStore("hdfs://nn:8020/exp"),
        CerebroValueError,
        "prefix_path of a LocalStore must be a local path or file:// URL, got "
        "'hdfs://nn:8020/exp'",
    ),
    Case(
        "Store.create(url)",
        "an unknown URL scheme",
        lambda ctx: lambda: Store.create("s3://bucket/exp"),
        CerebroValueError,
        "url scheme must be one of file://, hdfs://, webhdfs:// (or a plain path), got "
        "'s3://bucket/exp'",
    ),
    Case(
        "HDFSStore(prefix_path)",
        "a port out of range",
        lambda ctx: lambda: HDFSStore("hdfs://nn:99999/exp"),
        CerebroValueError,
        "prefix_path is not a valid URL (Port out of range 0-65535), got 'hdfs://nn:99999/exp'",
    ),
    Case(
        "HDFSStore(driver)",
        "an unknown driver",
        lambda ctx: lambda: HDFSStore("hdfs://nn:8020/exp", driver="ftp"),
        CerebroValueError,
        "driver must be one of ('libhdfs', 'webhdfs'), got 'ftp'",
    ),
    Case(
        "backend.prepare_data(store)",
        "a store whose prefix is a file",
        lambda ctx: ctx.prepare(ctx.df(), store=_prefix_is_a_file(ctx)),
        StoreError,
        "prefix_path must be a folder, but <prefix> is a file",
    ),
    Case(
        "search.fit_on_prepared_data()",
        "a store whose prefix is a file",
        lambda ctx: ctx.search(store=_prefix_is_a_file(ctx)).fit_on_prepared_data,
        StoreError,
        "prefix_path must be a folder, but <prefix> is a file",
    ),
    # cerebro.backend.SparkBackend -------------------------------------------------------------
    Case(
        "SparkBackend(num_workers)",
        "num_workers=0",
        lambda ctx: lambda: SparkBackend(ctx.spark.sparkContext, num_workers=0),
        CerebroValueError,
        "num_workers must be >= 1, got 0",
    ),
    Case(
        "SparkBackend(num_workers)",
        'num_workers="2"',
        lambda ctx: lambda: SparkBackend(ctx.spark.sparkContext, num_workers="2"),
        CerebroTypeError,
        "num_workers must be an int >= 1, got '2'",
    ),
    Case(
        "SparkBackend(spark_context)",
        'a master URL ("local[2]") instead of a SparkContext',
        lambda ctx: lambda: SparkBackend("local[2]"),
        CerebroTypeError,
        "spark_context must be a pyspark.SparkContext (e.g. spark.sparkContext) or None, got "
        "builtins.str",
    ),
    Case(
        "SparkBackend(data_cache)",
        'an unknown cache, data_cache="ram"',
        lambda ctx: lambda: SparkBackend(ctx.spark.sparkContext, data_cache="ram"),
        CerebroValueError,
        "data_cache must be one of ('auto', 'memory', 'disk'), got 'ram'",
    ),
    Case(
        "search.fit_on_prepared_data()",
        "num_workers=64 on a cluster with 2 task slots",
        _small_cluster_search,
        ClusterCapacityError,
        "num_workers=64 needs 64 task slots at once, but the cluster has 2",
    ),
    # backend.prepare_data / search.fit(df): the DataFrame -------------------------------------
    Case(
        "backend.prepare_data(feature_columns)",
        'a misspelt feature column ("featurs")',
        lambda ctx: ctx.prepare(ctx.df(), feature_columns=["featurs"]),
        ColumnError,
        "feature_columns: no column 'featurs' in the data (did you mean 'features'?)",
    ),
    Case(
        "search.fit(df)",
        "a label column of strings",
        lambda ctx: (
            lambda: ctx.search(
                store=ctx.fresh_store(),
                feature_columns=["features", "age"],
                label_columns=["label"],
            ).fit(
                ctx.df(
                    [(f, a, "yes" if y else "no") for f, a, y in make_rows()],
                    "features array<double>, age double, label string",
                )
            )
        ),
        ColumnError,
        "column 'label' has type string: only numbers, arrays of numbers and ML vectors are "
        "supported",
    ),
    Case(
        "search.fit(df)",
        "NaN in a feature array",
        lambda ctx: (
            lambda: ctx.search(
                store=ctx.fresh_store(),
                feature_columns=["features", "age"],
                label_columns=["label"],
            ).fit(ctx.df(_nan_in_features()))
        ),
        ColumnError,
        "array column 'features' has 1 rows with NaN or infinite values",
        jobs="check",
    ),
    Case(
        "backend.prepare_data(df)",
        "an infinite value in a scalar feature",
        lambda ctx: ctx.prepare(ctx.df(_with_value(1, float("inf"))), store=ctx.fresh_store()),
        ColumnError,
        "column 'age' has 1 rows with NaN or infinite values",
        jobs="check",
    ),
    Case(
        "backend.prepare_data(df)",
        "null labels",
        lambda ctx: ctx.prepare(ctx.df(_null_labels()), store=ctx.fresh_store()),
        ColumnError,
        "column 'label' has 3 null values",
        jobs="check",
    ),
    Case(
        "backend.prepare_data(df)",
        "feature arrays of different lengths",
        lambda ctx: ctx.prepare(ctx.df(_with_value(0, [1.0, 2.0, 3.0])), store=ctx.fresh_store()),
        ColumnError,
        "array column 'features' has rows of unequal length (3 to 4 elements)",
        jobs="check",
    ),
    Case(
        "backend.prepare_data(df)",
        "an empty DataFrame",
        lambda ctx: ctx.prepare(ctx.df([]), store=ctx.fresh_store()),
        CerebroValueError,
        "df is empty: it has 0 rows, there is nothing to prepare",
        jobs="check",
    ),
    Case(
        "backend.prepare_data(df)",
        "a pandas DataFrame",
        lambda ctx: ctx.prepare(_pandas_frame()),
        CerebroTypeError,
        "df must be a pyspark.sql.DataFrame, got DataFrame; convert it with "
        "spark.createDataFrame(df)",
    ),
    Case(
        "backend.prepare_data(df)",
        "another DataFrame into a store that holds a prepared dataset",
        lambda ctx: ctx.prepare(ctx.df(make_rows(seed=1)), store=_prepared_store(ctx)),
        DatasetMismatchError,
        "the store <prefix> already holds a different prepared dataset",
        jobs="check",
    ),
    Case(
        "search.fit(df)",
        "validation=1.5",
        lambda ctx: (
            lambda: ctx.search(
                store=ctx.fresh_store(),
                validation=1.5,
                feature_columns=["features", "age"],
                label_columns=["label"],
            ).fit(ctx.df())
        ),
        CerebroValueError,
        "validation must be a fraction strictly between 0 and 1 or the name of a boolean or 0/1 "
        "column, got 1.5",
    ),
    Case(
        "backend.prepare_data(validation)",
        'validation="no_such_col"',
        lambda ctx: ctx.prepare(ctx.df(), validation="no_such_col"),
        ColumnError,
        "validation: no column 'no_such_col' in df",
    ),
    Case(
        "backend.prepare_data(store)",
        "a store whose metadata file is not JSON",
        lambda ctx: ctx.prepare(ctx.df(), store=_corrupt_metadata(ctx, "{not json")),
        DatasetMismatchError,
        "already holds a dataset whose metadata <meta> cannot be read",
    ),
    # cerebro.tune: constructors -------------------------------------------------------------
    Case(
        "GridSearch(num_epochs)",
        "num_epochs=0",
        lambda ctx: lambda: ctx.search(num_epochs=0),
        CerebroValueError,
        "num_epochs must be an int >= 1, got 0",
    ),
    Case(
        "GridSearch(mode)",
        'mode="up"',
        lambda ctx: lambda: ctx.search(mode="up"),
        CerebroValueError,
        "mode must be 'min', 'max' or None, got 'up'",
    ),
    Case(
        "GridSearch(search_space)",
        'a plain value: {"lr": 0.1}',
        lambda ctx: lambda: ctx.search(space={"lr": 0.1}),
        CerebroTypeError,
        "search_space['lr'] must be an hp_* primitive ... got float 0.1; to try this single "
        "value use hp_choice([0.1])",
    ),
    Case(
        "GridSearch(search_space)",
        'a plain list: {"lr": [0.1, 0.2]}',
        lambda ctx: lambda: ctx.search(space={"lr": [0.1, 0.2]}),
        CerebroTypeError,
        "search_space['lr'] must be an hp_* primitive ... got list [0.1, 0.2]; to try each of "
        "these values use hp_choice([0.1, 0.2])",
    ),
    Case(
        "hp_uniform(min, max)",
        "hp_uniform(1, 1)",
        lambda ctx: lambda: hp_uniform(1, 1),
        CerebroValueError,
        "hp_uniform: min must be < max, got min=1, max=1",
    ),
    Case(
        "hp_loguniform(min, max)",
        "hp_loguniform(0, 1) (bounds are values, not exponents)",
        lambda ctx: lambda: hp_loguniform(0, 1),
        CerebroValueError,
        "hp_loguniform: min must be > 0 (the bounds are the values themselves, not exponents), "
        "got min=0",
    ),
    Case(
        "hp_choice(options)",
        "hp_choice([])",
        lambda ctx: lambda: hp_choice([]),
        CerebroValueError,
        "hp_choice: options must not be empty, got []",
    ),
    Case(
        "TPESearch(parallelism)",
        "parallelism=0",
        lambda ctx: lambda: ctx.search(TPESearch, num_models=4, parallelism=0),
        CerebroValueError,
        "parallelism must be an int >= 1, got 0",
    ),
    Case(
        "RandomSearch(num_models)",
        "num_models=0",
        lambda ctx: lambda: ctx.search(RandomSearch, num_models=0),
        CerebroValueError,
        "num_models must be an int >= 1, got 0",
    ),
    Case(
        "GridSearch(stopper)",
        'a string: stopper="patience"',
        lambda ctx: lambda: ctx.search(stopper="patience"),
        CerebroTypeError,
        "stopper must be a cerebro.tune stopping policy, got 'patience'",
    ),
    Case(
        "PatienceStopping(patience)",
        "patience=0",
        lambda ctx: lambda: PatienceStopping(patience=0),
        CerebroValueError,
        "PatienceStopping: patience must be >= 1, got 0",
    ),
    Case(
        "GridSearch(experiment_name)",
        'a path: experiment_name="../x"',
        lambda ctx: lambda: ctx.search(experiment_name="../x"),
        CerebroValueError,
        "experiment_name must be 1-128 characters ... got '../x'",
    ),
    Case(
        "GridSearch(estimator_gen_fn)",
        "a number (3) instead of a function",
        lambda ctx: lambda: ctx.search(gen=3),
        CerebroTypeError,
        "estimator_gen_fn must be a callable params -> SparkEstimator, got 3",
    ),
    # cerebro.tune: fit_on_prepared_data (the estimator, checked before any Spark job) --------
    Case(
        "search.fit_on_prepared_data()",
        "estimator_gen_fn raises",
        lambda ctx: ctx.search(gen=raising_gen).fit_on_prepared_data,
        CerebroValueError,
        "estimator_gen_fn raised ZeroDivisionError for params {'lr': 0.1}",
    ),
    Case(
        "search.fit_on_prepared_data()",
        "estimator_gen_fn returns a keras.Model",
        lambda ctx: ctx.search(gen=keras_model_gen).fit_on_prepared_data,
        CerebroTypeError,
        "estimator_gen_fn must return a cerebro.keras.SparkEstimator, got Functional",
    ),
    Case(
        "search.fit_on_prepared_data()",
        "estimator_gen_fn returns None",
        lambda ctx: ctx.search(gen=none_gen).fit_on_prepared_data,
        CerebroTypeError,
        "estimator_gen_fn must return a cerebro.keras.SparkEstimator, got NoneType",
    ),
    Case(
        "SparkEstimator(model)",
        'an input named "agee" for feature column "age"',
        lambda ctx: ctx.search(gen=gen_with({"age_input": "agee"})).fit_on_prepared_data,
        CerebroValueError,
        "the model has 2 inputs named ['features', 'agee'] ... but ['agee'] match none",
    ),
    Case(
        "SparkEstimator(model)",
        "an input of shape (5,) for a column of 4 values",
        lambda ctx: ctx.search(gen=gen_with({"features_shape": (5,)})).fit_on_prepared_data,
        CerebroValueError,
        "model input 'features' expects samples of shape [5] but feature column 'features' "
        "holds shape [4]",
    ),
    Case(
        "SparkEstimator(model)",
        "two outputs for one label column",
        lambda ctx: ctx.search(gen=gen_with({"outputs": ("a", "b")})).fit_on_prepared_data,
        CerebroValueError,
        "the model has 2 output(s) ['a', 'b'] but 1 label column(s) ['label'] were given; there "
        "must be one label column per output",
    ),
    Case(
        "SparkEstimator(model)",
        "an output of shape (2, 3) for a scalar label",
        lambda ctx: ctx.search(gen=gen_with({"output_shape": (2, 3)})).fit_on_prepared_data,
        CerebroValueError,
        "model output 'label' produces samples of shape [2, 3] but label column 'label' holds "
        "shape []",
    ),
    Case(
        "SparkEstimator(optimizer)",
        'an unknown name: optimizer="adamm"',
        lambda ctx: ctx.search(gen=gen_with(optimizer="adamm")).fit_on_prepared_data,
        CerebroValueError,
        "optimizer 'adamm' is not an optimizer Keras knows",
    ),
    Case(
        "SparkEstimator(loss)",
        'an unknown name: loss="msee"',
        lambda ctx: ctx.search(gen=gen_with(loss="msee")).fit_on_prepared_data,
        CerebroValueError,
        "loss 'msee' is not a loss Keras knows",
    ),
    Case(
        "SparkEstimator(batch_size)",
        "batch_size=0",
        lambda ctx: ctx.search(gen=gen_with(batch_size=0)).fit_on_prepared_data,
        CerebroValueError,
        "batch_size must be an int >= 1, got 0",
    ),
    Case(
        "SparkEstimator(steps_per_execution)",
        "steps_per_execution=0",
        lambda ctx: ctx.search(gen=gen_with(steps_per_execution=0)).fit_on_prepared_data,
        CerebroValueError,
        "steps_per_execution must be an int >= 1 or None, got 0",
    ),
    Case(
        "GridSearch(evaluation_metric)",
        'evaluation_metric="f7" (not compiled)',
        lambda ctx: ctx.search(evaluation_metric="f7").fit_on_prepared_data,
        CerebroValueError,
        "evaluation_metric 'f7' is not a metric of the compiled model; available: loss",
    ),
    Case(
        "GridSearch(feature_columns)",
        'a misspelt feature column ("featurs")',
        lambda ctx: ctx.search(feature_columns=["featurs", "age"]).fit_on_prepared_data,
        ColumnError,
        "feature column(s) ['featurs'] are not in the data (did you mean 'features'?)",
    ),
    # cerebro.tune: what the store holds -----------------------------------------------------
    Case(
        "search.fit_on_prepared_data()",
        "a metadata file that is not JSON",
        lambda ctx: ctx.search(store=_corrupt_metadata(ctx, "{not json")).fit_on_prepared_data,
        StoreError,
        "<meta> is not valid JSON (corrupt or truncated)",
    ),
    Case(
        "search.fit_on_prepared_data()",
        "a metadata file whose row counts were edited",
        lambda ctx: ctx.search(store=_corrupt_metadata(ctx)).fit_on_prepared_data,
        StoreError,
        "<meta>: dataset metadata: split 'train' has total_rows=<edited> but its files add up "
        "to <rows>",
    ),
    Case(
        "search.fit_on_prepared_data()",
        "the same experiment_name again, without resume or overwrite",
        lambda ctx: (
            ctx.search(
                store=_experiment_record(ctx, {"models": {"bad-000": 0}})
            ).fit_on_prepared_data
        ),
        CerebroValueError,
        "experiment_name 'bad' already exists in the store (1 models at <record>)",
    ),
    Case(
        "search.fit_on_prepared_data()",
        "resume=True with another configuration",
        lambda ctx: (
            ctx.search(
                store=_experiment_record(ctx, {"config": {"num_epochs": 9}, "models": {}}),
                resume=True,
            ).fit_on_prepared_data
        ),
        CerebroValueError,
        "cannot resume experiment 'bad': it was run with another configuration ... "
        "'num_epochs': (9, 1)",
    ),
    Case(
        "search.fit_on_prepared_data()",
        "resume=True with a corrupt experiment record",
        lambda ctx: (
            ctx.search(
                store=_experiment_record(ctx, '{"models": {"bad-0'), resume=True
            ).fit_on_prepared_data
        ),
        StoreError,
        "<record> is not valid JSON (corrupt or truncated)",
    ),
    Case(
        "search.fit_on_prepared_data()",
        "resume=True with a model's state.json cut off",
        _resume_with_corrupt_state,
        StoreError,
        "<state> is not valid JSON (corrupt or truncated)",
    ),
    # cerebro.keras.SparkModel -----------------------------------------------------------------
    Case(
        "SparkModel.from_checkpoint()",
        "a checkpoint that is not a .keras archive",
        lambda ctx: _checkpoint(ctx, b"\x00garbage, not a zip archive" * 10, transform=False),
        StoreError,
        "checkpoint <ckpt> is not a .keras archive (corrupt or truncated)",
    ),
    Case(
        "SparkModel.from_checkpoint().transform()",
        "a zip archive that holds no Keras model",
        lambda ctx: _checkpoint(ctx, _zip_without_a_model(), transform=True),
        StoreError,
        "<ckpt> is not a valid .keras archive",
    ),
    Case(
        "SparkModel.load(path)",
        "a saved model file that was truncated",
        lambda ctx: _saved_model(ctx, "model"),
        StoreError,
        "<model> does not match the checksum in <config>",
    ),
    Case(
        "SparkModel.load(path)",
        "a saved config that is not JSON",
        lambda ctx: _saved_model(ctx, "config"),
        StoreError,
        "<config> is not valid JSON (corrupt or truncated)",
    ),
    Case(
        "SparkModel.transform(df)",
        'a misspelt feature column ("featurs")',
        _transform_misspelt,
        ColumnError,
        "featureCols: no column 'featurs' in the data (did you mean 'features'?)",
    ),
]


def _case_id(case: Case) -> str:
    text = f"{case.entry.split('(')[0]}-{case.bad}".lower()
    return "".join(ch if ch.isalnum() or ch in "._-" else "-" for ch in text).strip("-")[:70]


# ---------------------------------------------------------------------- fixtures and tests
@pytest.fixture(scope="module")
def prepared(spark, tmp_path_factory):
    """A SparkBackend and a LocalStore holding the prepared data (2 workers, 75/25 split)."""
    store = LocalStore(str(tmp_path_factory.mktemp("bad_inputs") / "store"))
    backend = SparkBackend(spark.sparkContext, num_workers=W, verbose=0)
    backend.prepare_data(
        store,
        spark.createDataFrame(make_rows(), SCHEMA),
        validation=0.25,
        feature_columns=["features", "age"],
        label_columns=["label"],
    )
    return backend, store


def test_there_are_enough_cases():
    assert len(CASES) >= 35
    assert len({_case_id(c) for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=_case_id)
def test_bad_input_gives_a_clear_error_and_changes_nothing(spark, prepared, tmp_path, case):
    backend, store = prepared
    ctx = Ctx(spark=spark, backend=backend, store=store, tmp=tmp_path)
    call = case.build(ctx)
    roots = (store.local_path(store.prefix_path), str(tmp_path))
    before = [snapshot(root) for root in roots]
    jobs = jobs_started(spark)

    with pytest.raises(CerebroError) as info:
        call()

    ran = jobs_started(spark) - jobs
    assert type(info.value) is case.error, f"{type(info.value).__name__}: {info.value}"
    message, excerpt, at = str(info.value), case.excerpt, 0
    for name, value in ctx.details.items():
        excerpt = excerpt.replace(f"<{name}>", value)
    for part in excerpt.split(" ... "):  # the parts, in this order
        found = message.find(part, at)
        assert found >= 0, f"{part!r} is not in (the rest of) {message!r}"
        at = found + len(part)
    if case.jobs == "none":
        assert ran == 0, f"{ran} Spark jobs ran before the error"
    else:  # the one aggregation that finds bad values (Spark may split it at its shuffle)
        assert 1 <= ran <= 2
    assert [snapshot(root) for root in roots] == before


def test_every_case_is_in_the_docs_table():
    rows = [line for line in DOCS.read_text().splitlines() if line.startswith("|")]
    missing = [
        f"{c.error.__name__}: {c.excerpt}"
        for c in CASES
        if not any(f"`{c.excerpt}`" in row and c.error.__name__ in row for row in rows)
    ]
    assert not missing, "cases missing from docs/errors.md:\n" + "\n".join(missing)
