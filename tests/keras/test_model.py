"""SparkModel: predictions on Spark equal Keras' own, save/load round trips, clear errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
from pyspark.cloudpickle import register_pickle_by_value
from pyspark.errors import PythonException
from pyspark.ml import Pipeline, PipelineModel, Transformer
from pyspark.ml.linalg import Vectors, VectorUDT
from pyspark.sql import functions as F
from pyspark.sql import types as T

from cerebro.exceptions import CerebroTypeError, CerebroValueError, ColumnError, StoreError
from cerebro.keras import SparkEstimator, SparkModel, create_initial_checkpoint
from cerebro.keras import model as model_module
from cerebro.tune.result import ModelSelectionResult, TrainedModel

ROWS = 60
# Classes defined here are shipped to the executors by value (this module is not importable
# there), as a user's notebook classes would be.
register_pickle_by_value(sys.modules[__name__])


# ---------------------------------------------------------------------- models and data
def single_input(num_features=4, name="features", output="label"):
    inputs = keras.Input(shape=(num_features,), name=name)
    hidden = keras.layers.Dense(8, activation="tanh")(inputs)
    return keras.Model(inputs, keras.layers.Dense(1, name=output)(hidden))


def two_inputs():
    a = keras.Input(shape=(3,), name="a")
    b = keras.Input(shape=(1,), name="b")
    joined = keras.layers.Concatenate()([a, b])
    return keras.Model([a, b], keras.layers.Dense(1, name="y")(joined))


def two_outputs():
    x = keras.Input(shape=(4,), name="x")
    hidden = keras.layers.Dense(8, activation="relu")(x)
    price = keras.layers.Dense(1, name="price")(hidden)
    kind = keras.layers.Dense(3, activation="softmax", name="kind")(hidden)
    return keras.Model(x, [price, kind])


class TinySubclassed(keras.Model):
    """A subclassed model: no symbolic inputs or outputs."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.dense = keras.layers.Dense(2)

    def call(self, x):
        return self.dense(x) * 2.0


def features(rows=ROWS, width=4, seed=0):
    return np.random.default_rng(seed).normal(size=(rows, width))


@pytest.fixture(scope="module")
def frame(spark):
    """ids, an array column, the same values as dense/sparse vectors, a scalar and a string."""
    x = features()
    rows = []
    for i in range(ROWS):
        vec = Vectors.sparse(4, {0: x[i, 0]}) if i % 7 == 0 else Vectors.dense(x[i])
        rows.append((i, x[i].tolist(), vec, float(x[i, 0]), f"r{i}"))
    schema = T.StructType(
        [
            T.StructField("id", T.LongType()),
            T.StructField("arr", T.ArrayType(T.DoubleType())),
            T.StructField("vec", VectorUDT()),
            T.StructField("s", T.DoubleType()),
            T.StructField("name", T.StringType()),
        ]
    )
    df = spark.createDataFrame(rows, schema).repartition(3).cache()
    vec_values = np.array([[x[i, 0], 0, 0, 0] if i % 7 == 0 else x[i] for i in range(ROWS)])
    yield df, x, vec_values
    df.unpersist()


@pytest.fixture
def small_batches(spark):
    """Several Arrow batches per partition, so the per-process model cache is exercised."""
    key = "spark.sql.execution.arrow.maxRecordsPerBatch"
    old = spark.conf.get(key)
    spark.conf.set(key, "7")
    yield
    spark.conf.set(key, old)


def by_id(df, *columns):
    """The rows as pandas, in id order (sorted in pandas: Spark's orderBy would run the model
    twice, once more to sample the sort's range boundaries)."""
    cols = list(dict.fromkeys(["id", *columns]))
    return df.select(*cols).toPandas().sort_values("id").reset_index(drop=True)[list(columns)]


def plan_of(df):
    return df._jdf.queryExecution().executedPlan().toString()


# ---------------------------------------------------------------------- predictions
def test_array_column_predictions_equal_keras_predict(frame, small_batches):
    df, x, _ = frame
    model = single_input()
    sm = SparkModel(model, feature_columns=["arr"], label_columns=["label"], batch_size=5)
    assert isinstance(sm, Transformer) and sm.getOutputCols() == ["label__output"]

    out = sm.transform(df)
    assert out.columns == df.columns + ["label__output"]
    assert out.schema["label__output"].dataType == T.DoubleType()
    assert plan_of(out).count("ArrowEvalPython") == 1  # one batched UDF, no per-row calls
    got = by_id(out, "id", "name", "s", "label__output")
    assert got["id"].tolist() == list(range(ROWS))  # every row kept once, with its columns
    assert got["name"].tolist() == [f"r{i}" for i in range(ROWS)]
    np.testing.assert_array_equal(got["s"].to_numpy(), x[:, 0])
    expected = model.predict(x.astype("float32"), verbose=0).reshape(-1)
    np.testing.assert_allclose(got["label__output"].to_numpy(), expected, rtol=1e-6, atol=1e-6)

    empty = sm.transform(df.limit(0))
    assert empty.columns == out.columns and empty.count() == 0


def test_vector_and_scalar_columns(frame):
    df, x, vec_values = frame
    model = single_input()
    sm = SparkModel(model, feature_columns=["vec"], label_columns=["label"])
    sm.setOutputCols(["pred"])
    got = by_id(sm.transform(df), "vec", "pred")
    assert got["vec"].iloc[1] == Vectors.dense(x[1])  # the vector column itself is kept
    expected = model.predict(vec_values.astype("float32"), verbose=0).reshape(-1)
    np.testing.assert_allclose(got["pred"].to_numpy(), expected, rtol=1e-6, atol=1e-6)

    scalar = single_input(num_features=1, name="s")
    sm = SparkModel(scalar, feature_columns=["s"], label_columns=["label"])
    got = by_id(sm.transform(df), "label__output")
    expected = scalar.predict(x[:, :1].astype("float32"), verbose=0).reshape(-1)
    np.testing.assert_allclose(got["label__output"].to_numpy(), expected, rtol=1e-6, atol=1e-6)


def test_two_feature_columns_feed_inputs_by_name(spark):
    x = features(rows=40, width=4, seed=1)
    df = spark.createDataFrame(
        [(i, float(x[i, 3]), x[i, :3].tolist()) for i in range(40)],
        "id long, b double, a array<double>",
    )
    model = two_inputs()
    # Column order differs from the input order: matched by name.
    sm = SparkModel(model, feature_columns=["b", "a"], label_columns=["y"], batch_size=16)
    got = by_id(sm.transform(df), "y__output")
    expected = model.predict(
        {"a": x[:, :3].astype("float32"), "b": x[:, 3:].astype("float32")}, verbose=0
    )
    np.testing.assert_allclose(got["y__output"].to_numpy(), expected.reshape(-1), atol=1e-6)


def test_two_outputs_make_a_double_and_an_array_column(frame):
    df, x, _ = frame
    model = two_outputs()
    sm = SparkModel(
        model,
        feature_columns=["arr"],
        label_columns=["kind", "price"],  # matched to the outputs by name, not by position
        output_columns=["kind_probs", "price_pred"],
    )
    out = sm.transform(df)
    assert out.schema["price_pred"].dataType == T.DoubleType()
    assert out.schema["kind_probs"].dataType == T.ArrayType(T.DoubleType(), False)
    assert plan_of(out).count("ArrowEvalPython") == 1  # both outputs from one UDF call
    got = by_id(out, "kind_probs", "price_pred")
    price, kind = model.predict(x.astype("float32"), verbose=0)
    np.testing.assert_allclose(got["price_pred"].to_numpy(), price.reshape(-1), atol=1e-6)
    np.testing.assert_allclose(np.stack(got["kind_probs"].to_numpy()), kind, atol=1e-6)


def test_subclassed_model_output_shape_is_probed(frame):
    df, x, _ = frame
    model = TinySubclassed()
    model(np.zeros((1, 4), "float32"))
    sm = SparkModel(
        model,
        feature_columns=["arr"],
        label_columns=["t"],
        custom_objects={"TinySubclassed": TinySubclassed},
    )
    out = sm.transform(df)
    assert out.schema["t__output"].dataType == T.ArrayType(T.DoubleType(), False)
    got = np.stack(by_id(out, "t__output")["t__output"].to_numpy())
    np.testing.assert_allclose(got, model.predict(x, verbose=0), atol=1e-5)


def test_model_is_built_once_per_executor_process(spark, frame, small_batches):
    df, _, _ = frame
    sm = SparkModel(single_input(), feature_columns=["arr"], label_columns=["label"])
    many = df.repartition(4)  # 4 tasks of about 3 Arrow batches on 2 cores
    sm.transform(many).agg(F.sum("label__output")).collect()
    _, token, _ = sm._executor_payload()

    def report(batches):
        import pandas as pd

        from cerebro.keras.model import _executor_stats

        for _ in batches:
            pass
        stats = _executor_stats().get(token, {"loads": 0, "batches": 0})
        yield pd.DataFrame({"pid": [os.getpid()], **{k: [v] for k, v in stats.items()}})

    seen = (
        spark.range(0, 8, numPartitions=8)
        .mapInPandas(report, "pid long, loads long, batches long")
        .dropDuplicates(["pid"])
        .toPandas()
    )
    seen = seen[seen["loads"] > 0]
    assert len(seen) >= 1
    assert (seen["loads"] == 1).all(), seen  # built once per process...
    assert (seen["batches"] > 1).any(), seen  # ...and reused for later batches and tasks
    assert seen["batches"].sum() <= 2 * ROWS  # each row predicted in a batch, never alone


def test_batch_conversion_rejects_ragged_arrays_and_null_rows():
    import pandas as pd

    feed = model_module._Feed("features", "arr", "array", (None,), "float32")
    ok = model_module._feature_array(pd.Series([np.ones(3), np.zeros(3)]), feed)
    assert ok.dtype == np.float32 and ok.tolist() == [[1, 1, 1], [0, 0, 0]]
    with pytest.raises(
        CerebroValueError, match=r"'arr' holds arrays of different lengths \[2, 3\]"
    ):
        model_module._feature_array(pd.Series([np.ones(3), np.ones(2), np.ones(2)]), feed)
    with pytest.raises(CerebroValueError, match="'arr' holds null rows"):
        model_module._feature_array(pd.Series([np.ones(3), None]), feed)
    scalar = model_module._Feed("s", "s", "scalar", (1,), "float32")
    assert model_module._feature_array(pd.Series([1.0, 2.0]), scalar).shape == (2, 1)


def test_params_follow_spark_ml_conventions():
    sm = SparkModel(single_input(), feature_columns=["arr"], label_columns=["label"])
    assert {"featureCols", "labelCols", "outputCols", "batchSize"} <= {p.name for p in sm.params}
    assert "batchSize" in sm.explainParams()
    copied = sm.copy({sm.batchSize: 7, sm.outputCols: ["p"]})
    assert (copied.getBatchSize(), copied.getOutputCols(), copied.uid) == (7, ["p"], sm.uid)
    assert (sm.getBatchSize(), sm.getOutputCols()) == (1024, ["label__output"])
    assert copied.keras() is sm.keras()


# ---------------------------------------------------------------------- checkpoints
def test_from_checkpoint_reads_lazily_and_predicts_the_checkpoint(frame, local_store):
    df, x, _ = frame
    model = single_input()
    est = SparkEstimator(model, keras.optimizers.Adam(1e-2), "mse")
    url = create_initial_checkpoint(est, local_store, "m-7")
    # As a search's result hands it out.
    result = ModelSelectionResult(
        [TrainedModel("m-7", {"lr": 0.01}, "done", {"val_loss": [0.5]}, 1, checkpoint_path=url)],
        metric_key="val_loss",
        mode="min",
        store=local_store,
        feature_columns=["arr"],
        label_columns=["label"],
        experiment_name="exp",
    )
    sm = result.get_best_model()
    assert isinstance(sm, SparkModel) and sm.model_id == "m-7"
    assert sm._keras_model is None  # nothing read yet
    assert "m-7" in repr(sm)
    loaded = sm.keras()
    assert loaded is not model and loaded.optimizer is not None  # compiled, as trained
    for a, b in zip(loaded.get_weights(), model.get_weights()):
        np.testing.assert_array_equal(a, b)
    got = by_id(sm.transform(df), "label__output")["label__output"].to_numpy()
    np.testing.assert_allclose(got, model.predict(x, verbose=0).reshape(-1), atol=1e-6)

    with pytest.raises(StoreError, match="does not exist"):
        SparkModel.from_checkpoint(
            local_store,
            local_store.get_checkpoint_path("nope"),
            feature_columns=["arr"],
            label_columns=["label"],
        )


def test_weight_changes_through_keras_show_in_transform(frame):
    df, x, _ = frame
    sm = SparkModel(single_input(), feature_columns=["arr"], label_columns=["label"])
    before = by_id(sm.transform(df), "label__output")["label__output"].to_numpy()
    kernel, bias = sm.keras().layers[-1].get_weights()
    sm.keras().layers[-1].set_weights([kernel, bias + 10.0])
    after = by_id(sm.transform(df), "label__output")["label__output"].to_numpy()
    np.testing.assert_allclose(after, before + 10.0, atol=1e-5)


# ---------------------------------------------------------------------- save / load
def test_save_load_round_trip_in_process_and_in_a_pipeline(frame, tmp_path):
    df, _, _ = frame
    sm = SparkModel(
        two_outputs(),
        feature_columns=["arr"],
        label_columns=["price", "kind"],
        output_columns=["p", "k"],
        batch_size=9,
        model_id="best",
    )
    before = by_id(sm.transform(df), "id", "p", "k")
    path = str(tmp_path / "saved")
    sm.save(path)
    assert sorted(os.listdir(path)) == ["metadata", "model.keras", "sparkmodel.json"]
    config = json.loads((tmp_path / "saved" / "sparkmodel.json").read_text())
    assert config["feature_columns"] == ["arr"] and config["output_columns"] == ["p", "k"]

    loaded = SparkModel.load(path)
    assert (loaded.uid, loaded.model_id, loaded.getBatchSize()) == (sm.uid, "best", 9)
    assert loaded.getOutputCols() == ["p", "k"]
    after = by_id(loaded.transform(df), "id", "p", "k")
    np.testing.assert_array_equal(after["p"].to_numpy(), before["p"].to_numpy())
    np.testing.assert_array_equal(np.stack(after["k"]), np.stack(before["k"]))

    with pytest.raises(CerebroValueError, match="not empty; pass overwrite=True"):
        sm.save(path)
    sm.write().overwrite().save("file://" + path)  # the Spark ML writer, to a file:// URL
    assert SparkModel.read().load(path).uid == sm.uid

    # In a Pipeline, saved and loaded by Spark ML's own PipelineModel persistence.
    pipeline = Pipeline(stages=[sm]).fit(df)
    pipe_path = str(tmp_path / "pipeline")
    pipeline.write().overwrite().save(pipe_path)
    reloaded = PipelineModel.load(pipe_path)
    assert isinstance(reloaded.stages[0], SparkModel)
    again = by_id(reloaded.transform(df), "id", "p")
    np.testing.assert_array_equal(again["p"].to_numpy(), before["p"].to_numpy())


def test_save_and_load_through_a_given_store(copying_store):
    model = two_outputs()
    sm = SparkModel(model, feature_columns=["x"], label_columns=["price", "kind"], model_id="m")
    url = copying_store.get_run_path("m") + "/exported"
    sm.save(url, store=copying_store)  # written through the store's upload path
    assert copying_store.listdir(url) == ["metadata", "model.keras", "sparkmodel.json"]
    loaded = SparkModel.load(url, store=copying_store)
    assert loaded.getOutputCols() == ["price__output", "kind__output"]
    x = features(rows=6).astype("float32")
    for a, b in zip(loaded.keras().predict(x, verbose=0), model.predict(x, verbose=0)):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(CerebroTypeError, match="store must be a cerebro Store or None"):
        sm.save(url, store="hdfs://nn")


FRESH_PROCESS = textwrap.dedent(
    """
    import json, sys
    from pyspark.sql import SparkSession
    from cerebro.keras import SparkModel

    model_path, data_path, out_path = sys.argv[1:]
    spark = (SparkSession.builder.master("local[1]").config("spark.ui.enabled", "false")
             .getOrCreate())
    model = SparkModel.load(model_path)
    rows = model.transform(spark.read.parquet(data_path)).select("id", "label__output").collect()
    with open(out_path, "w") as f:
        json.dump({str(r.id): r.label__output for r in rows}, f)
    spark.stop()
    """
)


@pytest.mark.slow
def test_saved_model_predicts_the_same_in_a_fresh_process(frame, tmp_path):
    df, _, _ = frame
    # One row per inference call: float results then do not depend on how the other process
    # happens to split the rows into partitions and Arrow batches (matrix kernels may round
    # the last bit differently for different batch sizes).
    sm = SparkModel(single_input(), feature_columns=["arr"], label_columns=["label"], batch_size=1)
    before = by_id(sm.transform(df), "id", "label__output")
    sm.save(str(tmp_path / "m"))
    df.select("id", "arr").write.parquet(str(tmp_path / "data"))
    script = tmp_path / "fresh.py"
    script.write_text(FRESH_PROCESS)
    env = dict(os.environ, PYSPARK_PYTHON=sys.executable, PYSPARK_DRIVER_PYTHON=sys.executable)
    args = [str(tmp_path / "m"), str(tmp_path / "data"), str(tmp_path / "out.json")]
    proc = subprocess.run(
        [sys.executable, str(script), *args], env=env, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    fresh = json.loads((tmp_path / "out.json").read_text())
    assert len(fresh) == ROWS
    got = np.array([fresh[str(i)] for i in before["id"]])
    np.testing.assert_array_equal(got, before["label__output"].to_numpy())  # bit for bit


def lambda_model():
    inputs = keras.Input(shape=(4,), name="features")
    doubled = keras.layers.Lambda(lambda t: t * 2.0)(inputs)
    return keras.Model(inputs, keras.layers.Dense(1, name="label")(doubled))


def test_lambda_layers_need_safe_mode_false_to_load(frame, tmp_path):
    df, x, _ = frame
    model = lambda_model()
    sm = SparkModel(model, feature_columns=["arr"], label_columns=["label"])
    # The live model was made here, so it ships to the executors without a safe-mode check.
    got = by_id(sm.transform(df), "label__output")["label__output"].to_numpy()
    np.testing.assert_allclose(got, model.predict(x, verbose=0).reshape(-1), atol=1e-6)

    path = str(tmp_path / "lam")
    sm.save(path)
    with pytest.raises(CerebroValueError, match="safe_mode=False"):
        SparkModel.load(path)
    trusted = SparkModel.load(path, safe_mode=False)
    again = by_id(trusted.transform(df), "label__output")["label__output"].to_numpy()
    np.testing.assert_array_equal(again, got)


# ---------------------------------------------------------------------- errors
def test_bad_columns_fail_before_any_spark_job(frame):
    df, _, _ = frame
    sm = SparkModel(single_input(), feature_columns=["arr"], label_columns=["label"])
    with pytest.raises(ColumnError, match=r"no column 'ar'.*did you mean 'arr'"):
        sm.setFeatureCols(["ar"]).transform(df)
    with pytest.raises(ColumnError, match="'name' cannot feed the model: only numbers"):
        sm.setFeatureCols(["name"]).transform(df)
    with pytest.raises(CerebroValueError, match=r"expects samples of shape \[4\].*'s'"):
        sm.setFeatureCols(["s"]).transform(df)
    sm.setFeatureCols(["arr"])
    with pytest.raises(CerebroValueError, match="output column 'NAME' clashes with column 'name'"):
        sm.setOutputCols(["NAME"]).transform(df)
    with pytest.raises(CerebroValueError, match=r"one column per label column \(1"):
        sm.setOutputCols(["a", "b"])
    with pytest.raises(CerebroValueError, match="batchSize must be an int >= 1, got 0"):
        sm.setBatchSize(0)
    with pytest.raises(CerebroTypeError, match="transform takes a Spark DataFrame"):
        sm.setOutputCols(["ok"]).transform(df.toPandas())
    with pytest.raises(CerebroValueError, match="2 label column"):
        SparkModel(single_input(), feature_columns=["arr"], label_columns=["a", "b"]).transform(df)


def test_bad_constructor_arguments():
    with pytest.raises(CerebroTypeError, match="model must be a keras.Model, got builtins.str"):
        SparkModel("model.keras", feature_columns=["a"], label_columns=["b"])
    with pytest.raises(CerebroTypeError, match="feature_columns must be a list"):
        SparkModel(single_input(), feature_columns="arr", label_columns=["label"])
    with pytest.raises(CerebroValueError, match="batch_size must be an int >= 1, got -3"):
        SparkModel(single_input(), feature_columns=["a"], label_columns=["b"], batch_size=-3)
    with pytest.raises(CerebroTypeError, match="safe_mode must be True or False"):
        SparkModel(single_input(), feature_columns=["a"], label_columns=["b"], safe_mode="no")
    unbuilt = keras.Sequential([keras.layers.Dense(1)])
    with pytest.raises(CerebroValueError, match="is not built"):
        SparkModel(unbuilt, feature_columns=["a"], label_columns=["b"])


def test_wrong_array_length_fails_with_a_clear_message(spark):
    df = spark.createDataFrame([(0, [1.0, 2.0])], "id long, arr array<double>")
    sm = SparkModel(single_input(), feature_columns=["arr"], label_columns=["label"])
    with pytest.raises(
        PythonException, match=r"expects samples of shape \[4\].*holds shape \[2\]"
    ):
        sm.transform(df).collect()


def test_load_errors(frame, tmp_path):
    with pytest.raises(StoreError, match="no saved SparkModel at .*sparkmodel.json is missing"):
        SparkModel.load(str(tmp_path / "nothing"))
    sm = SparkModel(single_input(), feature_columns=["arr"], label_columns=["label"])
    path = tmp_path / "m"
    sm.save(str(path))
    model_file = path / "model.keras"
    data = bytearray(model_file.read_bytes())
    data[len(data) // 2] ^= 0xFF
    model_file.write_bytes(bytes(data))
    with pytest.raises(StoreError, match="does not match the checksum"):
        SparkModel.load(str(path))
    model_file.unlink()
    with pytest.raises(StoreError, match="has no model file"):
        SparkModel.load(str(path))
    (path / "sparkmodel.json").write_text('{"format": "cerebro.keras.SparkModel", "format_')
    with pytest.raises(StoreError, match="not valid JSON"):
        SparkModel.load(str(path))
    with pytest.raises(CerebroValueError, match="path must be a non-empty path or URL"):
        SparkModel.load("")

    # A checksum that matches a file that is not an archive: still a StoreError.
    sm.save(str(path), overwrite=True)
    model_file.write_bytes(b"not a zip")
    config = json.loads((path / "sparkmodel.json").read_text())
    config["sha256"] = model_module._sha256(b"not a zip")
    (path / "sparkmodel.json").write_text(json.dumps(config))
    with pytest.raises(StoreError, match="not a .keras archive"):
        SparkModel.load(str(path))


def squared_error(y_true, y_pred):
    return keras.ops.mean((y_true - y_pred) ** 2)


class Scale(keras.layers.Layer):
    def call(self, x):
        return x * 3.0


def test_custom_objects_on_load(tmp_path, caplog):
    inputs = keras.Input(shape=(4,), name="features")
    model = keras.Model(inputs, keras.layers.Dense(1, name="label")(Scale()(inputs)))
    model.compile("adam", loss=squared_error)
    model.optimizer.build(model.trainable_variables)  # saved with its slots, as checkpoints are
    path = str(tmp_path / "custom")
    custom = {"Scale": Scale, "squared_error": squared_error}
    SparkModel(model, feature_columns=["f"], label_columns=["label"], custom_objects=custom).save(
        path
    )
    x = features(rows=5).astype("float32")

    full = SparkModel.load(path, custom_objects=custom)
    assert full.keras().loss is squared_error  # compiled as trained
    np.testing.assert_array_equal(full.keras().predict(x, verbose=0), model.predict(x, verbose=0))
    # Without the loss only the compile settings are lost; prediction needs none of them.
    no_loss = SparkModel.load(path, custom_objects={"Scale": Scale})
    assert not no_loss.keras().compiled and "without its compile settings" in caplog.text
    np.testing.assert_array_equal(
        no_loss.keras().predict(x, verbose=0), model.predict(x, verbose=0)
    )
    # Without the layer the model cannot be built; the error names what was saved.
    with pytest.raises(StoreError, match=r"custom_objects.*saved with custom_objects \['Scale', "):
        SparkModel.load(path)


def test_import_cerebro_keras_stays_light():
    code = (
        "import sys, cerebro.keras\n"
        "bad = [m for m in ('pyspark', 'tensorflow', 'keras') if m in sys.modules]\n"
        "assert not bad, bad\n"
        "assert 'SparkModel' in cerebro.keras.__all__\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
