"""Data preparation on real Spark: DataFrame -> Parquet in a LocalStore -> shards and Petastorm.

One module-scoped dataset (2,400 rows of many column types, prepared for 3 workers) is shared
by the read-back tests; the tests that need their own store use a few hundred rows. Bad input
is checked for its error class and message, for running no Spark job (arguments) or only the
check job (data), and for leaving the store exactly as it was.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import shutil
import uuid

import numpy as np
import pyarrow.parquet as pq
import pytest
from pyspark.ml.linalg import Vectors, VectorUDT
from pyspark.sql import functions as F
from pyspark.sql import types as T

from cerebro.backend.spark.prepare import prepare_data
from cerebro.exceptions import (
    CerebroTypeError,
    CerebroValueError,
    ColumnError,
    DataPreparationError,
    DatasetMismatchError,
)
from cerebro.storage import LocalStore
from cerebro.storage.dataset import load_metadata, read_shard

N = 2400
FEATURES = ["id", "x", "n", "flag", "arr", "arrf", "dv", "sv"]
LABELS = ["y1", "y2"]
SCHEMA = T.StructType(
    [
        T.StructField("id", T.LongType(), False),
        T.StructField("x", T.DoubleType()),
        T.StructField("n", T.IntegerType()),
        T.StructField("flag", T.BooleanType()),
        T.StructField("arr", T.ArrayType(T.DoubleType())),
        T.StructField("arrf", T.ArrayType(T.FloatType(), containsNull=False)),
        T.StructField("dv", VectorUDT()),
        T.StructField("sv", VectorUDT()),
        T.StructField("y1", T.DoubleType()),
        T.StructField("y2", T.IntegerType()),
        T.StructField("is_val", T.BooleanType()),
        T.StructField("val01", T.IntegerType()),
    ]
)


def make_row(i: int) -> tuple:
    return (
        i,
        i / 7,
        i % 11 - 5,
        i % 2 == 0,
        [i * 0.1, -i * 0.1, 1.0],
        [float(i % 5), 0.5],
        Vectors.dense([float(i), 1.0, 2.0, 3.0]),
        Vectors.sparse(5, {i % 5: float(i)}),
        float(i % 2),
        i % 3,
        i % 5 == 0,
        int(i % 5 == 0),
    )


def expected_columns(ids: np.ndarray) -> dict[str, np.ndarray]:
    """What each column must hold for the rows ``ids``, with the dtype it must have."""
    i = ids.astype(np.int64)
    dense_sv = np.zeros((len(i), 5))
    dense_sv[np.arange(len(i)), i % 5] = i
    return {
        "id": i,
        "x": i / 7,
        "n": (i % 11 - 5).astype(np.int32),
        "flag": i % 2 == 0,
        "arr": np.stack([i * 0.1, -i * 0.1, np.ones(len(i))], axis=1),
        "arrf": np.stack([(i % 5).astype(np.float32), np.full(len(i), 0.5, np.float32)], axis=1),
        "dv": np.stack([i, np.ones(len(i)), np.full(len(i), 2.0), np.full(len(i), 3.0)], axis=1),
        "sv": dense_sv,
        "y1": (i % 2).astype(np.float64),
        "y2": (i % 3).astype(np.int32),
    }


def snapshot(store: LocalStore) -> dict | None:
    """Every file and folder under the store (hidden ones too) with size and mtime."""
    root = store.local_path(store.prefix_path)
    if not os.path.exists(root):
        return None
    out = {}
    for dirpath, dirs, files in os.walk(root):
        for name in dirs + files:
            path = os.path.join(dirpath, name)
            st = os.stat(path)
            out[os.path.relpath(path, root)] = (
                "dir" if name in dirs else (st.st_size, st.st_mtime_ns)
            )
    return out


@contextlib.contextmanager
def spark_jobs(spark):
    """Collect the ids of the Spark jobs started inside the block."""
    sc = spark.sparkContext
    group = f"test-{uuid.uuid4().hex}"
    sc.setJobGroup(group, "test")
    jobs: list[int] = []
    try:
        yield jobs
    finally:
        sc._jsc.sc().listenerBus().waitUntilEmpty()  # job events reach the tracker async
        jobs.extend(sc.statusTracker().getJobIdsForGroup(group))
        sc.setLocalProperty("spark.jobGroup.id", None)
        sc.setLocalProperty("spark.job.description", None)


def prepare(spark, store, df, **kwargs):
    args = dict(num_workers=3, validation=0.25, feature_columns=FEATURES, label_columns=LABELS)
    args.update(kwargs)
    return prepare_data(spark, store, df, **args)


@pytest.fixture(scope="module")
def source_df(spark):
    return spark.createDataFrame([make_row(i) for i in range(N)], SCHEMA).repartition(4)


@pytest.fixture(scope="module")
def prepared(spark, source_df, tmp_path_factory):
    store = LocalStore(str(tmp_path_factory.mktemp("prepared") / "store"))
    meta = prepare(spark, store, source_df, rows_per_row_group=100)
    return store, meta


def read_all(store, split, num_shards, columns=None):
    return [read_shard(store, split, i, num_shards, columns) for i in range(num_shards)]


# ---------------------------------------------------------------------------------- happy path
def test_metadata_describes_columns_splits_and_files(prepared):
    store, meta = prepared
    assert meta == load_metadata(store)
    assert meta.feature_columns == tuple(FEATURES) and meta.label_columns == tuple(LABELS)
    assert meta.column_shapes() == {
        "id": (), "x": (), "n": (), "flag": (), "arr": (3,), "arrf": (2,), "dv": (4,),
        "sv": (5,), "y1": (), "y2": (),
    }  # fmt: skip
    dtypes = {k: v.name for k, v in meta.column_dtypes().items()}
    assert dtypes == {
        "id": "int64", "x": "float64", "n": "int32", "flag": "bool", "arr": "float64",
        "arrf": "float32", "dv": "float64", "sv": "float64", "y1": "float64", "y2": "int32",
    }  # fmt: skip
    assert meta.columns["dv"].source_type == "vector"
    assert meta.columns["arrf"].source_type == "array<float>"
    assert (meta.num_workers, meta.validation, meta.seed) == (3, 0.25, 42)
    assert meta.created and meta.cerebro_version and meta.fingerprint.startswith("cerebro-fp1:")
    train, val = meta.split_rows("train"), meta.split_rows("val")
    assert train + val == N
    assert 0.21 < val / N < 0.29  # a seeded hash: about the requested fraction
    for split, spec in meta.splits.items():
        assert list(spec.shard_rows) == meta.shard_sizes(split, 3)
        assert len(spec.files) % 3 == 0 and all(f.rows > 0 for f in spec.files)
        sizes = [f.rows for f in spec.files]
        assert max(sizes) <= 1.25 * min(sizes)  # round-robin spreads rows evenly
        url = store.get_train_data_path() if split == "train" else store.get_val_data_path()
        names = sorted(n for n in os.listdir(store.local_path(url)) if not n.startswith("_"))
        assert names == [f.name for f in spec.files]
        for f in spec.files:
            pf = pq.ParquetFile(store.local_path(url + "/" + f.name))
            groups = tuple(pf.metadata.row_group(i).num_rows for i in range(pf.num_row_groups))
            assert groups == f.row_groups and f.rows == pf.metadata.num_rows
            assert all(g == 100 for g in groups[:-1]) and 0 < groups[-1] <= 100
            assert pf.schema_arrow.field("n").type == "int32"
            assert pf.schema_arrow.field("arrf").type.value_type == "float"  # float32
            assert "is_val" not in pf.schema_arrow.names and "val01" not in pf.schema_arrow.names
    assert sorted(os.listdir(store.local_path(store.prefix_path))) == ["train_data", "val_data"]


@pytest.mark.parametrize("num_shards", [1, 2, 3, 5])
def test_every_row_read_back_once_balanced_and_exact(prepared, num_shards):
    store, meta = prepared
    seen = []
    for split in ("train", "val"):
        shards = read_all(store, split, num_shards)
        sizes = [len(s["id"]) for s in shards]
        assert min(sizes) > 0 and max(sizes) <= 1.1 * min(sizes), sizes
        assert sum(sizes) == meta.split_rows(split)
        for shard in shards:
            want = expected_columns(shard["id"])
            assert list(shard) == FEATURES + LABELS
            for name, values in shard.items():
                assert values.dtype == want[name].dtype, name
                np.testing.assert_array_equal(values, want[name], err_msg=name)
            seen.append(shard["id"])
    ids = np.concatenate(seen)
    assert len(ids) == N and set(ids.tolist()) == set(range(N))


@pytest.mark.filterwarnings("ignore::FutureWarning")  # petastorm's use of legacy pyarrow APIs
def test_petastorm_make_batch_reader_reads_the_same_rows(prepared):
    from petastorm import make_batch_reader

    store, meta = prepared
    mine = read_shard(store, "train", 0, 1)
    order = np.argsort(mine["id"])
    with make_batch_reader(
        store.get_train_data_path(), num_epochs=1, reader_pool_type="dummy"
    ) as reader:
        batches = list(reader)
    got = {name: np.concatenate([getattr(b, name) for b in batches]) for name in ("id", "x", "n")}
    got_arr = np.concatenate([np.stack(list(b.arr)) for b in batches])
    got_sv = np.concatenate([np.stack(list(b.sv)) for b in batches])
    theirs = np.argsort(got["id"])
    assert len(got["id"]) == meta.split_rows("train")
    np.testing.assert_array_equal(got["id"][theirs], mine["id"][order])
    np.testing.assert_array_equal(got["x"][theirs], mine["x"][order])
    np.testing.assert_array_equal(got["n"][theirs], mine["n"][order])
    np.testing.assert_array_equal(got_arr[theirs], mine["arr"][order])
    np.testing.assert_array_equal(got_sv[theirs], mine["sv"][order])


def test_split_ignores_partitioning_and_same_data_is_skipped(
    spark, source_df, prepared, tmp_path, caplog
):
    store, meta = prepared
    shuffled = source_df.repartition(7, "x")
    other = LocalStore(str(tmp_path / "other"))
    again = prepare(spark, other, shuffled, num_workers=2)
    assert again.fingerprint == meta.fingerprint
    val_ids = set(read_shard(other, "val", 0, 1, ["id"])["id"].tolist())
    assert val_ids == set(read_shard(store, "val", 0, 1, ["id"])["id"].tolist())

    before = snapshot(store)
    with caplog.at_level(logging.INFO, logger="cerebro"):
        skipped = prepare(spark, store, shuffled, num_workers=2)
    assert skipped == meta  # the existing metadata, laid out for 3 workers
    assert snapshot(store) == before  # no file written, renamed or touched
    assert "skipped writing" in caplog.text and "laid out for 3 workers" in caplog.text


def test_validation_columns_choose_the_split(spark, source_df, tmp_path):
    for column in ("is_val", "val01"):
        store = LocalStore(str(tmp_path / column))
        meta = prepare(spark, store, source_df, validation=column, num_workers=2)
        assert meta.validation == column and column not in meta.columns
        val_ids = read_shard(store, "val", 0, 1, ["id"])["id"]
        train_ids = read_shard(store, "train", 0, 1, ["id"])["id"]
        assert sorted(val_ids.tolist()) == list(range(0, N, 5))
        assert len(train_ids) == N - N // 5 and not set(train_ids.tolist()) & set(val_ids.tolist())


def test_different_data_is_refused_then_overwritten(spark, tmp_path):
    store = LocalStore(str(tmp_path / "store"))
    first = spark.createDataFrame([make_row(i) for i in range(300)], SCHEMA)
    second = spark.createDataFrame([make_row(i) for i in range(300, 700)], SCHEMA)
    old = prepare(spark, store, first, num_workers=2)
    before = snapshot(store)
    with pytest.raises(DatasetMismatchError, match=r"different prepared dataset.*overwrite=True"):
        prepare(spark, store, second, num_workers=2)
    assert snapshot(store) == before
    with pytest.raises(DatasetMismatchError, match=r"overwrite=True"):
        prepare(spark, store, first, num_workers=2, seed=7)  # same data, another split
    assert snapshot(store) == before

    new = prepare(spark, store, second, num_workers=2, overwrite=True)
    assert new.fingerprint != old.fingerprint and load_metadata(store) == new
    ids = np.concatenate([s["id"] for sp in ("train", "val") for s in read_all(store, sp, 2)])
    assert sorted(ids.tolist()) == list(range(300, 700))
    # The old data is gone and nothing temporary is left next to the new data.
    assert sorted(os.listdir(store.local_path(store.prefix_path))) == ["train_data", "val_data"]


def test_foreign_or_corrupt_data_in_the_store_is_refused(spark, source_df, prepared, tmp_path):
    src, _ = prepared
    store = LocalStore(str(tmp_path / "store"))
    shutil.copytree(src.local_path(src.prefix_path), store.local_path(store.prefix_path))
    store.delete(store.get_data_metadata_path())  # plain Parquet now: not prepared by Cerebro
    before = snapshot(store)
    with spark_jobs(spark) as jobs:
        with pytest.raises(DatasetMismatchError, match=r"Cerebro did not prepare.*overwrite=True"):
            prepare(spark, store, source_df)
    assert jobs == [] and snapshot(store) == before
    store.write_text(store.get_data_metadata_path(), "{not json")
    with pytest.raises(DatasetMismatchError, match=r"cannot be read.*overwrite=True"):
        prepare(spark, store, source_df)


def test_a_failed_write_leaves_the_store_as_it_was(spark, source_df, prepared, tmp_path):
    src, meta = prepared
    store = LocalStore(str(tmp_path / "store"))
    shutil.copytree(src.local_path(src.prefix_path), store.local_path(store.prefix_path))

    def fail_while_writing(x):  # fails only in Cerebro's write job, known by its description
        from pyspark import TaskContext

        if "writing" in (TaskContext.get().getLocalProperty("spark.job.description") or ""):
            raise RuntimeError("disk on fire")
        return x

    failing = source_df.withColumn("x", F.udf(fail_while_writing, T.DoubleType())("x"))
    before = snapshot(store)
    with pytest.raises(DataPreparationError, match=r"left as it was.*disk on fire"):
        prepare(spark, store, failing, seed=1, overwrite=True)
    assert snapshot(store) == before  # old data intact, no temporary folders left
    assert load_metadata(store) == meta

    fresh = LocalStore(str(tmp_path / "fresh"))
    with pytest.raises(DataPreparationError, match="disk on fire"):
        prepare(spark, fresh, failing)
    assert snapshot(fresh) is None

    def fail_always(x):
        raise ValueError("bad input file")

    broken = source_df.withColumn("x", F.udf(fail_always, T.DoubleType())("x"))
    with pytest.raises(DataPreparationError, match=r"while checking it .*bad input file"):
        prepare(spark, fresh, broken)
    assert snapshot(fresh) is None


# ---------------------------------------------------------------------------------- bad input
ODD_SCHEMA = T.StructType(
    [
        T.StructField("x", T.DoubleType()),
        T.StructField("n", T.IntegerType()),
        T.StructField("y1", T.DoubleType()),
        T.StructField("w", T.DoubleType()),
        T.StructField("is_val", T.BooleanType()),
        T.StructField("name", T.StringType()),
        T.StructField("m", T.MapType(T.StringType(), T.DoubleType())),
        T.StructField("st", T.StructType([T.StructField("a", T.DoubleType())])),
        T.StructField("nested", T.ArrayType(T.ArrayType(T.DoubleType()))),
        T.StructField("sarr", T.ArrayType(T.StringType())),
        T.StructField("d", T.DateType()),
        T.StructField("dec", T.DecimalType(10, 2)),
    ]
)


@pytest.fixture(scope="module")
def odd_df(spark):
    return spark.createDataFrame([], ODD_SCHEMA)


BAD_INPUT = [
    # (change to the arguments, error class, message pattern)
    ({"feature_columns": None}, CerebroTypeError, r"feature_columns must be a list of column "
     r"names, got NoneType None"),
    ({"feature_columns": []}, CerebroValueError, r"feature_columns must name at least one "
     r"column, got \[\]"),
    ({"feature_columns": "x"}, CerebroTypeError, r"feature_columns must be a list.*did you "
     r"mean \['x'\]\?"),
    ({"label_columns": []}, CerebroValueError, r"label_columns must name at least one column"),
    ({"feature_columns": ["x", "x"]}, CerebroValueError, r"feature_columns must not repeat a "
     r"column, but repeats \['x'\]"),
    ({"feature_columns": ["x", "y1"]}, CerebroValueError, r"must not overlap, both hold "
     r"\['y1'\]"),
    ({"label_columns": ["y_1"]}, ColumnError, r"label_columns: no column 'y_1' in the data "
     r"\(did you mean 'y1'\?\)"),
    ({"feature_columns": ["X"]}, ColumnError, r"no column 'X' in the data \(did you mean "
     r"'x'\?\)"),
    ({"feature_columns": ["x", "name"]}, ColumnError, r"column 'name' has type string: "
     r".*StringIndexer"),
    ({"feature_columns": ["m"]}, ColumnError, r"column 'm' has type map<string,double>: maps "
     r"and structs are not supported"),
    ({"feature_columns": ["st"]}, ColumnError, r"column 'st' has type struct<a:double>: maps"),
    ({"feature_columns": ["nested"]}, ColumnError, r"column 'nested' has type "
     r"array<array<double>>: nested arrays are not supported"),
    ({"feature_columns": ["sarr"]}, ColumnError, r"column 'sarr' has type array<string>: "
     r"arrays of string are not supported"),
    ({"feature_columns": ["d", "dec"]}, ColumnError, r"'d' has type date: dates and "
     r"timestamps.*; column 'dec' has type decimal\(10,2\): .* cast it to double"),
    ({"validation": 0.0}, CerebroValueError, r"validation must be a fraction strictly between "
     r"0 and 1 .*got 0.0"),
    ({"validation": 1}, CerebroValueError, r"validation must be a fraction .*got 1$"),
    ({"validation": 1.5}, CerebroValueError, r"validation must be a fraction .*got 1.5"),
    ({"validation": float("nan")}, CerebroValueError, r"validation must be a .*got nan"),
    ({"validation": True}, CerebroValueError, r"validation must be a fraction .*got True"),
    ({"validation": None}, CerebroValueError, r"validation must be a fraction .*got None"),
    ({"validation": "is_vall"}, ColumnError, r"validation: no column 'is_vall' in df \(did "
     r"you mean 'is_val'\?\)"),
    ({"validation": "w"}, ColumnError, r"validation column 'w' must be boolean or an integer "
     r"column of 0/1, got type double"),
    ({"validation": "name"}, ColumnError, r"validation column 'name' must be .*got type "
     r"string"),
    ({"validation": "n"}, CerebroValueError, r"validation column 'n' must not also be a "
     r"feature or label column"),
    ({"num_workers": 0}, CerebroValueError, r"num_workers must be >= 1, got 0"),
    ({"num_workers": "2"}, CerebroTypeError, r"num_workers must be an int, got str '2'"),
    ({"num_workers": True}, CerebroTypeError, r"num_workers must be an int, got bool True"),
    ({"seed": 1.5}, CerebroTypeError, r"seed must be an int, got float 1.5"),
    ({"seed": 1 << 64}, CerebroValueError, r"seed must fit in 64 bits"),
    ({"rows_per_row_group": 0}, CerebroValueError, r"rows_per_row_group must be >= 1, got 0"),
    ({"overwrite": "yes"}, CerebroTypeError, r"overwrite must be True or False, got 'yes'"),
    ({"df": "table"}, CerebroTypeError, r"df must be a pyspark.sql.DataFrame, got str"),
    ({"store": "/tmp/x"}, CerebroTypeError, r"store must be a cerebro.storage.Store, got "
     r"'/tmp/x'"),
    ({"spark": "local"}, CerebroTypeError, r"spark_context_or_session must be a SparkContext, "
     r"a SparkSession or None, got str"),
]  # fmt: skip


@pytest.mark.parametrize(
    "change, error, message",
    BAD_INPUT,
    ids=[f"{i}-{next(iter(c[0]))}" for i, c in enumerate(BAD_INPUT)],
)
def test_bad_arguments_fail_before_any_job_and_leave_the_store(
    spark, odd_df, prepared, tmp_path, change, error, message
):
    store, _ = prepared
    fresh = LocalStore(str(tmp_path / "fresh"))
    for target in (store, fresh):
        args = dict(
            spark=spark,
            store=target,
            df=odd_df,
            num_workers=2,
            validation=0.25,
            feature_columns=["x", "n"],
            label_columns=["y1"],
        )
        args.update(change)
        before = snapshot(target)
        with spark_jobs(spark) as jobs, pytest.raises(error, match=message):
            prepare_data(args.pop("spark"), args.pop("store"), args.pop("df"), **args)
        assert jobs == []
        assert snapshot(target) == before


SMALL_SCHEMA = T.StructType(
    [
        T.StructField("id", T.LongType()),
        T.StructField("x", T.DoubleType()),
        T.StructField("arr", T.ArrayType(T.DoubleType())),
        T.StructField("dv", VectorUDT()),
        T.StructField("y1", T.DoubleType()),
        T.StructField("is_val", T.BooleanType()),
        T.StructField("val01", T.IntegerType()),
    ]
)


def small_rows(n=40, **overrides):
    """Rows of SMALL_SCHEMA; ``overrides[column]`` maps a row index to a replacement value."""
    rows = []
    for i in range(n):
        row = {
            "id": i, "x": i / 3, "arr": [float(i), 1.0], "dv": Vectors.dense([1.0, float(i)]),
            "y1": float(i % 2), "is_val": i % 4 == 0, "val01": int(i % 4 == 0),
        }  # fmt: skip
        for column, change in overrides.items():
            if i in change:
                row[column] = change[i]
        rows.append(tuple(row[f.name] for f in SMALL_SCHEMA.fields))
    return rows


INF, NAN = float("inf"), float("nan")
BAD_DATA = [
    # (id, rows, change to the arguments, error class, message pattern)
    ("null_feature", small_rows(x={1: None, 5: None, 9: None}), {}, ColumnError,
     r"column 'x' has 3 null values"),
    ("nan_feature", small_rows(x={2: NAN, 3: NAN}), {}, ColumnError,
     r"column 'x' has 2 rows with NaN or infinite values"),
    ("inf_feature", small_rows(x={2: -INF}), {}, ColumnError,
     r"column 'x' has 1 rows with NaN or infinite"),
    ("inf_in_array", small_rows(arr={4: [1.0, INF]}), {}, ColumnError,
     r"array column 'arr' has 1 rows with NaN or infinite values"),
    ("nan_in_vector", small_rows(dv={4: Vectors.dense([NAN, 1.0])}), {}, ColumnError,
     r"array column 'dv' has 1 rows with NaN"),
    ("null_element", small_rows(arr={1: [None, 1.0], 2: [2.0, None]}), {}, ColumnError,
     r"array column 'arr' has 2 rows with null elements"),
    ("null_array", small_rows(arr={7: None}), {}, ColumnError,
     r"column 'arr' has 1 null values"),
    ("unequal_lengths", small_rows(arr={3: [1.0, 2.0, 3.0]}), {}, ColumnError,
     r"array column 'arr' has rows of unequal length \(2 to 3 elements\); every row must "
     r"have the same length"),
    ("vector_sizes", small_rows(dv={0: Vectors.sparse(3, {0: 1.0})}), {}, ColumnError,
     r"array column 'dv' has rows of unequal length \(2 to 3"),
    ("empty_arrays", small_rows(arr={i: [] for i in range(40)}), {}, ColumnError,
     r"array column 'arr' holds only empty arrays"),
    ("null_label", small_rows(y1={0: None}), {}, ColumnError,
     r"column 'y1' has 1 null values"),
    ("several", small_rows(x={0: None}, y1={1: NAN}), {}, ColumnError,
     r"\(of 40 rows\): column 'x' has 1 null values; column 'y1' has 1 rows with NaN"),
    ("val01_values", small_rows(val01={1: 2, 2: 2, 3: -1, 5: 7}), {"validation": "val01"},
     ColumnError, r"validation column 'val01' has 4 values other than 0 and 1"),
    ("null_validation", small_rows(is_val={6: None}), {"validation": "is_val"}, ColumnError,
     r"validation column 'is_val' has 1 null values"),
    ("empty_df", [], {}, CerebroValueError, r"df is empty: it has 0 rows"),
    ("no_val_rows", small_rows(is_val=dict.fromkeys(range(40), False)),
     {"validation": "is_val"}, CerebroValueError,
     r"the validation split would be empty: validation column 'is_val' puts 0 of 40 rows"),
    ("no_train_rows", small_rows(val01=dict.fromkeys(range(40), 1)), {"validation": "val01"},
     CerebroValueError,
     r"the training split would be empty: validation column 'val01' puts 40 of 40"),
    ("tiny_fraction", small_rows(), {"validation": 1e-9}, CerebroValueError,
     r"the validation split would be empty: validation=1e-09 puts 0 of 40 rows"),
    ("fewer_rows_than_workers", small_rows(), {"num_workers": 20}, CerebroValueError,
     r"the validation split would have \d+ rows, fewer than num_workers=20 "
     r"\(validation=0.25, 40 rows\)"),
]  # fmt: skip


@pytest.mark.parametrize(
    "rows, change, error, message", [c[1:] for c in BAD_DATA], ids=[c[0] for c in BAD_DATA]
)
def test_bad_data_fails_in_the_check_job_and_leaves_the_store(
    spark, tmp_path, rows, change, error, message
):
    store = LocalStore(str(tmp_path / "fresh"))  # check_writable creates it: must be undone
    df = spark.createDataFrame(rows, SMALL_SCHEMA)
    args = dict(feature_columns=["id", "x", "arr", "dv"], label_columns=["y1"], num_workers=2)
    args.update(change)
    with spark_jobs(spark) as jobs, pytest.raises(error, match=message):
        prepare(spark, store, df, **args)
    assert 1 <= len(jobs) <= 2  # the one aggregation (Spark may split it at its shuffle)
    assert snapshot(store) is None


def test_bad_data_leaves_an_existing_dataset_untouched(spark, prepared):
    store, meta = prepared
    df = spark.createDataFrame(small_rows(x={3: NAN}), SMALL_SCHEMA)
    before = snapshot(store)
    with pytest.raises(ColumnError, match=r"column 'x' has 1 rows with NaN"):
        prepare(spark, store, df, feature_columns=["x"], label_columns=["y1"], overwrite=True)
    assert snapshot(store) == before and load_metadata(store) == meta


def test_default_layout_follows_the_row_size(spark, tmp_path, monkeypatch):
    from cerebro.backend.spark import prepare as module

    # Shrink the targets so that 3,000 rows need several row groups and files per worker.
    row_bytes = 64 * 8 + 8 + 8  # 64 doubles, id and y (int64)
    monkeypatch.setattr(module, "TARGET_ROW_GROUP_BYTES", 250 * row_bytes)
    monkeypatch.setattr(module, "TARGET_FILE_BYTES", 1000 * row_bytes)
    store = LocalStore(str(tmp_path / "store"))
    wide = F.array(*[F.col("id").cast("double")] * 64).alias("wide")
    df = spark.range(3000).select("id", wide, (F.col("id") % 2).alias("y"))
    meta = prepare_data(
        spark, store, df, num_workers=2, feature_columns=["id", "wide"], label_columns=["y"]
    )
    # 1,500 rows per worker at most 1,000 per file: 2 files per worker, 4 in all.
    assert {len(spec.files) for spec in meta.splits.values()} == {4}
    groups = [g for spec in meta.splits.values() for f in spec.files for g in f.row_groups]
    assert max(groups) == 250 and len(groups) >= math.ceil(3000 / 250)
