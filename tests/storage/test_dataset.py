"""The prepared-dataset reader: metadata, shards, inference of external data, codecs.

Most tests build datasets with pyarrow directly (real Parquet files and real metadata JSON) so
that many layouts can be checked in milliseconds; tests/backend/test_prepare.py reads data that
Spark prepared. The Petastorm test materialises a dataset with Petastorm itself.
"""

from __future__ import annotations

import io
import json
import os
import time

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from cerebro.exceptions import CerebroTypeError, CerebroValueError, ColumnError, StoreError
from cerebro.storage.dataset import (
    ColumnSpec,
    DatasetMetadata,
    ParquetFileSpec,
    SplitSpec,
    _decode_ndarrays,
    _plan_reads,
    compute_fingerprint,
    load_metadata,
    read_shard,
    shard_bounds,
    shard_sizes,
)


# ---------------------------------------------------------------------------------- helpers
def _split_url(store, split):
    return store.get_train_data_path() if split == "train" else store.get_val_data_path()


def write_dataset(store, layouts, make_table, *, with_metadata=True, num_workers=2):
    """Write Parquet files with the given row-group layout per split; return the metadata.

    ``layouts`` maps split -> list of files -> list of row-group sizes. ``make_table(start, n)``
    builds rows ``start .. start+n`` (global over both splits, so ids are unique).
    """
    start = 0
    splits = {}
    schema = None
    for split, files in layouts.items():
        url = _split_url(store, split)
        store.makedirs(url)
        specs = []
        for i, groups in enumerate(files):
            name = f"part-{i:05d}.parquet"
            table = make_table(start, sum(groups))
            schema = table.schema
            with (
                store.local_write(url + "/" + name) as path,
                pq.ParquetWriter(path, table.schema) as w,
            ):
                offset = 0
                for g in groups:
                    w.write_table(table.slice(offset, g), row_group_size=max(g, 1))
                    offset += g
            start += sum(groups)
            specs.append(ParquetFileSpec(name, sum(groups), tuple(g for g in groups if g)))
        total = sum(f.rows for f in specs)
        splits[split] = SplitSpec(total, tuple(specs), tuple(shard_sizes(total, num_workers)))
    columns = {}
    for f in schema:
        if pa.types.is_list(f.type):
            width = len(make_table(0, 1).column(f.name)[0])
            columns[f.name] = ColumnSpec(
                f.name, np.dtype(f.type.value_type.to_pandas_dtype()).name, (width,), str(f.type)
            )
        else:
            columns[f.name] = ColumnSpec(
                f.name, np.dtype(f.type.to_pandas_dtype()).name, (), str(f.type)
            )
    names = list(columns)
    meta = DatasetMetadata(
        fingerprint="cerebro-fp1:test",
        feature_columns=tuple(names[:-1]),
        label_columns=tuple(names[-1:]),
        columns=columns,
        splits=splits,
        num_workers=num_workers,
        validation=0.25,
        seed=1,
        created="2024-01-01T00:00:00+00:00",
        cerebro_version="0.1.0",
    )
    if with_metadata:
        store.write_json(store.get_data_metadata_path(), meta.to_dict())
    return meta


def id_table(start, n):
    ids = np.arange(start, start + n, dtype=np.int64)
    return pa.table(
        {
            "id": ids,
            "x": (ids * 0.5).astype(np.float32),
            "flag": ids % 2 == 0,
            "vec": pa.array([[float(i), -float(i)] for i in ids], type=pa.list_(pa.float32())),
            "label": (ids % 3).astype(np.int32),
        }
    )


# Layouts with uneven files, a file of one row group, tiny row groups, an empty file.
LAYOUTS = {
    "uneven": {"train": [[7, 7, 3], [5], [1, 1, 1, 1, 1, 1], [20, 4]], "val": [[3, 3], [4]]},
    "one_file": {"train": [[50]], "val": [[9]]},
    "with_empty_file": {"train": [[6, 6], [0], [6]], "val": [[2], [0], [3]]},
}


@pytest.fixture
def uneven_dataset(local_store):
    meta = write_dataset(local_store, LAYOUTS["uneven"], id_table)
    return local_store, meta


# ---------------------------------------------------------------------------------- shards
def test_shard_bounds_partition_the_rows_evenly():
    for total in (1, 7, 100, 101):
        for num_shards in range(1, min(total, 12) + 1):
            sizes = shard_sizes(total, num_shards)
            assert sum(sizes) == total
            assert max(sizes) - min(sizes) <= 1 and min(sizes) >= 1
            bounds = [shard_bounds(total, i, num_shards) for i in range(num_shards)]
            assert bounds[0][0] == 0 and bounds[-1][1] == total
            assert all(a[1] == b[0] for a, b in zip(bounds, bounds[1:]))


def test_plan_reads_only_the_overlapping_row_groups():
    files = [
        ParquetFileSpec("a", 10, (4, 6)),
        ParquetFileSpec("b", 0, ()),
        ParquetFileSpec("c", 5, (2, 0, 3)),
    ]
    # rows 3..8: group 0 (rows 0-3) and group 1 (rows 4-9) of file a
    plan = _plan_reads(files, 3, 8)
    assert [(p.file_index, p.row_groups, p.skip, p.take) for p in plan] == [(0, [0, 1], 3, 5)]
    # rows 10..15: only file c; its empty middle group is never read
    plan = _plan_reads(files, 10, 15)
    assert [(p.file_index, p.row_groups, p.skip, p.take) for p in plan] == [(2, [0, 2], 0, 5)]
    # rows 5..12: second group of a and first of c
    plan = _plan_reads(files, 5, 12)
    assert [(p.file_index, p.row_groups, p.skip, p.take) for p in plan] == [
        (0, [1], 1, 5),
        (2, [0], 0, 2),
    ]


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_every_row_read_exactly_once_for_any_number_of_shards(local_store, layout):
    meta = write_dataset(local_store, LAYOUTS[layout], id_table)
    for split, spec in meta.splits.items():
        expected = np.concatenate(
            [np.asarray(id_table(0, 0)["id"])]
            + [
                np.asarray(
                    pq.read_table(
                        local_store.local_path(_split_url(local_store, split) + "/" + f.name)
                    ).column("id")
                )
                for f in spec.files
            ]
        )
        for num_shards in sorted(
            {k for k in (1, 2, 3, 5, 8) if k <= spec.total_rows} | {spec.total_rows}
        ):
            shards = [read_shard(local_store, split, i, num_shards) for i in range(num_shards)]
            sizes = [len(s["id"]) for s in shards]
            assert max(sizes) - min(sizes) <= 1 and min(sizes) >= 1, sizes
            got = np.concatenate([s["id"] for s in shards])
            # Shards are consecutive global row ranges: concatenated, they are the split.
            np.testing.assert_array_equal(got, expected)


def test_shard_values_dtypes_and_shapes(uneven_dataset):
    store, meta = uneven_dataset
    out = read_shard(store, "train", 1, 3)
    assert list(out) == ["id", "x", "flag", "vec", "label"]
    ids = out["id"]
    assert out["id"].dtype == np.int64 and out["id"].shape == ids.shape
    assert out["x"].dtype == np.float32
    np.testing.assert_array_equal(out["x"], (ids * 0.5).astype(np.float32))
    assert out["flag"].dtype == np.bool_
    np.testing.assert_array_equal(out["flag"], ids % 2 == 0)
    assert out["vec"].dtype == np.float32 and out["vec"].shape == (len(ids), 2)
    np.testing.assert_array_equal(out["vec"][:, 1], -ids.astype(np.float32))
    assert out["label"].dtype == np.int32
    only = read_shard(store, "val", 0, 2, columns=["vec", "id"])
    assert list(only) == ["vec", "id"]


def test_fewer_rows_than_shards_is_a_clear_error(local_store):
    write_dataset(local_store, {"train": [[3]], "val": [[2]]}, id_table)
    assert len(read_shard(local_store, "val", 1, 2)["id"]) == 1
    with pytest.raises(
        CerebroValueError, match=r"'val' split has 2 rows, fewer than num_shards=3"
    ):
        read_shard(local_store, "val", 0, 3)


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        (
            {"split": "test"},
            CerebroValueError,
            r"split must be one of \['train', 'val'\], got 'test'",
        ),
        ({"shard": -1}, CerebroValueError, r"shard must be in \[0, 3\), got -1"),
        ({"shard": 3}, CerebroValueError, r"shard must be in \[0, 3\), got 3"),
        ({"num_shards": 0}, CerebroValueError, r"num_shards must be >= 1, got 0"),
        ({"shard": True}, CerebroTypeError, r"shard must be an int, got True"),
        ({"columns": ["lable"]}, ColumnError, r"no column 'lable'.*did you mean 'label'\?"),
        (
            {"columns": "label"},
            CerebroTypeError,
            r"list of column names.*did you mean \['label'\]",
        ),
        ({"columns": []}, CerebroValueError, r"columns must name at least one column"),
        ({"columns": ["id", "id"]}, CerebroValueError, r"must not repeat a column.*\['id'\]"),
    ],
)
def test_bad_read_arguments(uneven_dataset, kwargs, error, message):
    store, _ = uneven_dataset
    args = {"split": "train", "shard": 0, "num_shards": 3, **kwargs}
    with pytest.raises(error, match=message):
        read_shard(store, args.pop("split"), args.pop("shard"), args.pop("num_shards"), **args)


def test_reading_a_shard_of_300k_rows_by_20_columns_is_fast(local_store):
    n, cols = 300_000, 20
    rng = np.random.default_rng(0)
    data = {f"f{i}": rng.standard_normal(n) for i in range(cols)}

    def make(start, rows):
        return pa.table({k: v[start : start + rows] for k, v in data.items()})

    write_dataset(local_store, {"train": [[75_000] * 2] * 2, "val": [[10]]}, make)
    read_shard(local_store, "train", 0, 1)  # warm the page cache
    t0 = time.perf_counter()
    out = read_shard(local_store, "train", 0, 1)
    seconds = time.perf_counter() - t0
    print(f"read_shard 300k x 20 float64: {seconds:.3f} s")
    assert out["f7"].shape == (n,)
    np.testing.assert_array_equal(out["f7"], data["f7"])
    assert seconds < 1.0


# ---------------------------------------------------------------------------------- metadata
def test_metadata_json_round_trip(uneven_dataset):
    store, meta = uneven_dataset
    again = DatasetMetadata.from_dict(json.loads(json.dumps(meta.to_dict())))
    assert again == meta
    assert load_metadata(store) == meta
    assert meta.column_shapes() == {"id": (), "x": (), "flag": (), "vec": (2,), "label": ()}
    assert meta.column_dtypes()["x"] == np.float32
    assert meta.split_rows("train") == 52 and meta.split_rows("val") == 10
    assert meta.shard_sizes("train", 5) == [10, 10, 11, 10, 11]


def test_load_metadata_can_choose_other_columns(uneven_dataset):
    store, _ = uneven_dataset
    meta = load_metadata(store, feature_columns=["vec"], label_columns=["flag"])
    assert meta.feature_columns == ("vec",) and meta.label_columns == ("flag",)
    assert list(read_shard(store, "val", 0, 1, metadata=meta)) == ["vec", "flag"]
    with pytest.raises(ColumnError, match=r"feature_columns: no column 'vex'.*did you mean 'vec'"):
        load_metadata(store, feature_columns=["vex"])
    with pytest.raises(ColumnError, match=r"must not overlap, both hold \['vec'\]"):
        load_metadata(store, feature_columns=["vec"], label_columns=["vec"])


def _corrupt(raw: dict, how: str) -> str:
    if how == "truncated":
        return json.dumps(raw)[:40]
    if how == "not_an_object":
        return "[1, 2]"
    if how == "wrong_format":
        raw["format"] = "something-else"
    elif how == "newer_version":
        raw["format_version"] = 99
    elif how == "missing_key":
        del raw["splits"]
    elif how == "rows_do_not_add_up":
        raw["splits"]["train"]["total_rows"] += 1
    elif how == "row_groups_do_not_add_up":
        raw["splits"]["train"]["files"][0]["row_groups"][0] += 1
    elif how == "negative_rows":
        raw["splits"]["val"]["files"][0]["rows"] = -1
    elif how == "bad_dtype":
        raw["columns"][0]["dtype"] = "no-such-dtype"
    elif how == "unknown_feature":
        raw["feature_columns"].append("ghost")
    return json.dumps(raw)


@pytest.mark.parametrize(
    "how, message",
    [
        ("truncated", "not valid JSON"),
        ("not_an_object", "must be a JSON object"),
        ("wrong_format", "not a Cerebro dataset metadata file"),
        ("newer_version", "format_version 99, newer than"),
        ("missing_key", "KeyError"),
        ("rows_do_not_add_up", "total_rows=53 but its files add up to 52"),
        ("row_groups_do_not_add_up", "has 17 rows but its row groups add up to 18"),
        ("negative_rows", r"file rows must be an int >= 0, got -1"),
        ("bad_dtype", "TypeError"),
        ("unknown_feature", "names column 'ghost' but does not describe it"),
    ],
)
def test_corrupt_metadata_is_detected(uneven_dataset, how, message):
    store, meta = uneven_dataset
    url = store.get_data_metadata_path()
    store.write_text(url, _corrupt(meta.to_dict(), how))
    with pytest.raises(StoreError, match=message):
        load_metadata(store)
    with pytest.raises(StoreError):
        read_shard(store, "train", 0, 2)


def test_a_file_changed_since_preparation_is_detected(uneven_dataset):
    store, _ = uneven_dataset
    url = store.get_train_data_path() + "/part-00000.parquet"
    pq.write_table(id_table(0, 17), store.local_path(url), row_group_size=17)
    with pytest.raises(StoreError, match=r"changed since it was prepared.*\[17\].*\[7, 7, 3\]"):
        read_shard(store, "train", 0, 2)


def test_a_missing_file_is_detected(uneven_dataset):
    store, _ = uneven_dataset
    store.delete(store.get_val_data_path() + "/part-00001.parquet")
    assert len(read_shard(store, "val", 0, 2)["id"]) == 5  # shard 0 lies in file 0
    with pytest.raises(StoreError, match=r"part-00001.parquet is missing"):
        read_shard(store, "val", 1, 2)


def test_no_data_in_the_store(local_store):
    with pytest.raises(StoreError, match=r"holds no prepared data: .*train_data does not exist"):
        load_metadata(local_store)
    local_store.makedirs(local_store.get_train_data_path())
    with pytest.raises(StoreError, match=r"has no Parquet files and no Cerebro metadata"):
        read_shard(local_store, "train", 0, 1)


def test_fingerprint_depends_on_content_and_arguments():
    base = dict(
        row_count=10,
        row_hash_sum=12345,
        schema=[("x", "double"), ("y", "int")],
        feature_columns=["x"],
        label_columns=["y"],
        validation=0.25,
        seed=42,
    )
    fp = compute_fingerprint(**base)
    assert fp.startswith("cerebro-fp1:") and fp == compute_fingerprint(**base)
    assert compute_fingerprint(**{**base, "row_hash_sum": 12345 + (1 << 64)}) == fp  # mod 2**64
    for key, value in [
        ("row_count", 11),
        ("row_hash_sum", 12346),
        ("schema", [("x", "float"), ("y", "int")]),
        ("feature_columns", ["y"]),
        ("validation", 0.2),
        ("validation", "is_val"),
        ("seed", 43),
    ]:
        assert compute_fingerprint(**{**base, key: value}) != fp, key


# ---------------------------------------------------------------------------------- external data
def test_plain_parquet_without_metadata_is_inferred(local_store):
    def make(start, n):
        t = id_table(start, n)
        return t.append_column("name", pa.array([f"row{i}" for i in range(start, start + n)]))

    write_dataset(local_store, LAYOUTS["uneven"], make, with_metadata=False)
    local_store.write_bytes(local_store.get_train_data_path() + "/_SUCCESS", b"")
    meta = load_metadata(local_store)
    assert meta.source == "parquet" and meta.fingerprint.startswith("external:")
    assert meta.feature_columns == () and meta.label_columns == ()
    assert meta.column_shapes() == {"id": (), "x": (), "flag": (), "vec": (2,), "label": ()}
    assert meta.column_dtypes()["label"] == np.int32
    assert [f.row_groups for f in meta.splits["train"].files] == [
        (7, 7, 3),
        (5,),
        (1,) * 6,
        (20, 4),
    ]
    assert meta.split_rows("train") == 52 and meta.split_rows("val") == 10
    assert "name" not in meta.columns  # strings are not readable as numbers
    got = np.concatenate([read_shard(local_store, "train", i, 3)["id"] for i in range(3)])
    np.testing.assert_array_equal(got, np.arange(52))
    meta = load_metadata(local_store, feature_columns=["x", "vec"], label_columns=["label"])
    out = read_shard(local_store, "val", 0, 1, metadata=meta)
    assert list(out) == ["x", "vec", "label"] and out["vec"].shape == (10, 2)
    with pytest.raises(ColumnError, match=r"column 'name' has Parquet type string"):
        load_metadata(local_store, feature_columns=["name"], label_columns=["label"])


def test_ndarray_payloads_decode_fast_and_exactly():
    rng = np.random.default_rng(1)
    arrays = [rng.standard_normal((2, 3)).astype(np.float32) for _ in range(50)]

    def npy(a):
        buf = io.BytesIO()
        np.save(buf, a)
        return buf.getvalue()

    column = pa.array([npy(a) for a in arrays], type=pa.binary())
    np.testing.assert_array_equal(_decode_ndarrays(column, "NdarrayCodec"), np.stack(arrays))
    # A slice starts inside the byte buffer: offsets must be honoured.
    np.testing.assert_array_equal(
        _decode_ndarrays(column.slice(7, 5), "NdarrayCodec"), np.stack(arrays[7:12])
    )
    # Fortran-ordered payloads take the slow path and still decode right.
    fortran = pa.array([npy(np.asfortranarray(a)) for a in arrays[:3]], type=pa.binary())
    np.testing.assert_array_equal(_decode_ndarrays(fortran, "NdarrayCodec"), np.stack(arrays[:3]))
    mixed = pa.array([npy(arrays[0]), npy(arrays[1][:1])], type=pa.binary())
    with pytest.raises(ColumnError, match="ndarray values of different shapes"):
        _decode_ndarrays(mixed, "NdarrayCodec")


@pytest.mark.filterwarnings("ignore::FutureWarning")  # petastorm's use of legacy pyarrow APIs
def test_petastorm_materialized_dataset_is_read(spark, local_store):
    from petastorm.codecs import CompressedNdarrayCodec, NdarrayCodec, ScalarCodec
    from petastorm.etl.dataset_metadata import materialize_dataset
    from petastorm.unischema import Unischema, UnischemaField, dict_to_spark_row
    from pyspark.sql.types import IntegerType, LongType, StringType

    schema = Unischema(
        "Example",
        [
            UnischemaField("id", np.int64, (), ScalarCodec(LongType()), False),
            UnischemaField("image", np.float32, (2, 3), NdarrayCodec(), False),
            UnischemaField("emb", np.float64, (4,), CompressedNdarrayCodec(), False),
            UnischemaField("label", np.int32, (), ScalarCodec(IntegerType()), False),
            UnischemaField("name", np.str_, (), ScalarCodec(StringType()), False),
        ],
    )

    def row(i):
        return {
            "id": np.int64(i),
            "image": np.arange(6, dtype=np.float32).reshape(2, 3) + i,
            "emb": np.full(4, i / 10, dtype=np.float64),
            "label": np.int32(i % 3),
            "name": f"r{i}",
        }

    n = 60
    for split, ids in (("train", range(n)), ("val", range(n, n + 12))):
        url = _split_url(local_store, split)
        with materialize_dataset(spark, url, schema, row_group_size_mb=1):
            rdd = spark.sparkContext.parallelize(list(ids), 3).map(
                lambda i: dict_to_spark_row(schema, row(i))
            )
            spark.createDataFrame(rdd, schema.as_spark_schema()).write.parquet(url)

    meta = load_metadata(local_store, feature_columns=["image", "emb"], label_columns=["label"])
    assert meta.source == "petastorm"
    assert meta.column_shapes() == {"id": (), "image": (2, 3), "emb": (4,), "label": ()}
    assert meta.columns["image"].codec == "NdarrayCodec"
    assert meta.columns["label"].dtype == "int32"
    assert meta.split_rows("train") == n and meta.split_rows("val") == 12
    for num_shards in (1, 2, 3):
        shards = [
            read_shard(local_store, "train", i, num_shards, ["id", "image", "emb", "label"])
            for i in range(num_shards)
        ]
        ids = np.concatenate([s["id"] for s in shards])
        assert sorted(ids.tolist()) == list(range(n))
        for s in shards:
            assert s["image"].dtype == np.float32 and s["image"].shape == (len(s["id"]), 2, 3)
            expected = np.arange(6, dtype=np.float32).reshape(2, 3)[None] + s["id"][:, None, None]
            np.testing.assert_array_equal(s["image"], expected)
            np.testing.assert_array_equal(s["emb"], np.repeat(s["id"][:, None] / 10, 4, axis=1))
            np.testing.assert_array_equal(s["label"], (s["id"] % 3).astype(np.int32))
            assert s["label"].dtype == np.int32
    val = read_shard(local_store, "val", 0, 1, metadata=meta)
    assert list(val) == ["image", "emb", "label"] and len(val["label"]) == 12
    with pytest.raises(
        ColumnError, match=r"column 'name' holds <U0 values; Cerebro reads numbers"
    ):
        load_metadata(local_store, feature_columns=["name"], label_columns=["label"])


def test_prepare_and_read_through_a_webhdfs_store(spark, webhdfs_server):
    """End to end on HDFSStore(driver="webhdfs"): Spark tasks write through the store."""
    from pyspark.sql import functions as F

    from cerebro.backend.spark.prepare import prepare_data
    from cerebro.storage import HDFSStore

    store = HDFSStore(f"webhdfs://{webhdfs_server.address}/user/root/exp", driver="webhdfs")
    df = spark.range(500).select(
        "id", F.array(F.col("id") * 1.0, F.lit(2.0)).alias("arr"), (F.col("id") % 2).alias("y")
    )
    meta = prepare_data(
        spark,
        store,
        df,
        num_workers=2,
        feature_columns=["id", "arr"],
        label_columns=["y"],
        rows_per_row_group=64,
    )
    assert load_metadata(store) == meta
    ids = []
    for split in ("train", "val"):
        for i in range(3):
            out = read_shard(store, split, i, 3)
            np.testing.assert_array_equal(out["arr"][:, 0], out["id"].astype(np.float64))
            ids.append(out["id"])
    assert sorted(np.concatenate(ids).tolist()) == list(range(500))
    names = sorted(os.listdir(webhdfs_server.local_path("/user/root/exp")))
    assert names == ["train_data", "val_data"]
