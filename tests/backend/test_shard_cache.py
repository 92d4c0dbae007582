"""Where a worker keeps its shard: the memory budget, the disk cache and ``data_cache`` end to end.

The budget rule is pure logic, tested alone. The disk cache reads a real prepared dataset
(Parquet written by Spark) in bounded chunks into memory-mapped ``.npy`` files; a search with
``data_cache="disk"`` must train exactly as one that holds the data in memory.
"""

from __future__ import annotations

import os
import shutil
import sys

import numpy as np
import pytest

from cerebro.backend import SparkBackend
from cerebro.backend.spark.shard_cache import (
    DiskShardCache,
    available_memory,
    check_data_cache,
    choose_cache,
    shard_nbytes,
    spark_local_dir,
)
from cerebro.backend.spark.worker import workers_on_host
from cerebro.exceptions import CerebroValueError, ColumnError
from cerebro.storage import LocalStore
from cerebro.storage.dataset import iter_shard, load_metadata, read_shard
from cerebro.tune import GridSearch, hp_choice

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from e2e_script import estimator_gen_fn, make_df  # noqa: E402

GIB = 1 << 30


# ---------------------------------------------------------------------- the budget (pure)
def test_explicit_modes_are_taken_as_asked():
    assert choose_cache("memory", 100 * GIB, 1 * GIB, 8) == "memory"
    assert choose_cache("disk", 1, 100 * GIB, 1) == "disk"


def test_auto_holds_the_shard_in_memory_when_it_fits_its_share_of_the_host():
    # budget = 0.5 * available / workers on the host
    assert choose_cache("auto", 4 * GIB, 8 * GIB, 1) == "memory"  # budget 4 GiB: fits exactly
    assert choose_cache("auto", 4 * GIB + 1, 8 * GIB, 1) == "disk"
    assert choose_cache("auto", 1 * GIB, 8 * GIB, 4) == "memory"  # budget 1 GiB each
    assert choose_cache("auto", 1 * GIB + 1, 8 * GIB, 4) == "disk"  # the same shard, 4 workers
    assert choose_cache("auto", 3 * GIB, 8 * GIB, 1, fraction=0.25) == "disk"
    assert choose_cache("auto", 3 * GIB, 8 * GIB, 0) == "memory"  # at least one worker
    assert choose_cache("auto", 100 * GIB, None, 1) == "memory"  # unknown memory: as before


@pytest.mark.parametrize("bad", ["Disk", "ram", "", None, 1])
def test_bad_modes_are_refused(bad):
    with pytest.raises(CerebroValueError, match=r"data_cache must be one of .*got"):
        check_data_cache(bad)
    with pytest.raises(CerebroValueError, match="data_cache must be one of"):
        choose_cache(bad, 1, 1, 1)


def test_available_memory_reads_meminfo(tmp_path):
    fake = tmp_path / "meminfo"
    fake.write_text("MemTotal:       16318480 kB\nMemAvailable:    2048 kB\nBuffers: 1 kB\n")
    assert available_memory(str(fake)) == 2048 * 1024
    fake.write_text("MemTotal:       16318480 kB\n")
    assert available_memory(str(fake)) is None
    assert available_memory(str(tmp_path / "missing")) is None
    if os.path.exists("/proc/meminfo"):
        assert available_memory() > 0


def test_workers_on_host_counts_barrier_tasks_by_host():
    addresses = ["10.0.0.1:4001", "10.0.0.2:4001", "10.0.0.1:4002", "10.0.0.1:4003"]
    assert [workers_on_host(addresses, i) for i in range(4)] == [3, 1, 3, 3]
    assert workers_on_host([], 0) is None
    assert workers_on_host(["[::1]:7077", "[::1]:7078"], 1) == 2


def test_spark_local_dir_takes_the_first_existing_directory(tmp_path, monkeypatch):
    monkeypatch.setenv("SPARK_LOCAL_DIRS", f"{tmp_path / 'gone'},{tmp_path}")
    assert spark_local_dir() == str(tmp_path)
    monkeypatch.delenv("SPARK_LOCAL_DIRS")
    assert spark_local_dir() is None


# ---------------------------------------------------------------------- the disk cache
@pytest.fixture(scope="module")
def prepared(spark, tmp_path_factory):
    """600 rows (``features``: 6 doubles, ``label``: long), prepared for 2 workers."""
    store = LocalStore(str(tmp_path_factory.mktemp("cache") / "store"))
    backend = SparkBackend(spark.sparkContext, num_workers=2, verbose=0)
    backend.prepare_data(
        store, make_df(spark, 600), 0.25, feature_columns=["features"], label_columns=["label"]
    )
    return store, load_metadata(store)


def test_shard_bytes_are_estimated_from_the_metadata(prepared):
    store, meta = prepared
    cols = ["features", "label"]
    train, val = read_shard(store, "train", 1, 3, cols), read_shard(store, "val", 1, 3, cols)
    actual = sum(a.nbytes for a in (*train.values(), *val.values()))
    assert shard_nbytes(meta, 1, 3, cols) == actual
    assert shard_nbytes(meta, 1, 3, cols, ["train"]) == sum(a.nbytes for a in train.values())


def test_iter_shard_reads_bounded_chunks_that_make_up_the_shard(prepared):
    store, meta = prepared
    whole = read_shard(store, "train", 1, 3, metadata=meta)
    chunks = list(iter_shard(store, "train", 1, 3, metadata=meta, chunk_rows=7))
    assert len(chunks) > 10 and all(len(c["label"]) <= 7 for c in chunks)
    for name, values in whole.items():
        np.testing.assert_array_equal(np.concatenate([c[name] for c in chunks]), values)
    with pytest.raises(CerebroValueError, match="chunk_rows must be an int >= 1, got 0"):
        iter_shard(store, "train", 0, 3, chunk_rows=0)
    with pytest.raises(ColumnError, match="labl"):
        iter_shard(store, "train", 0, 3, ["labl"])  # checked before anything is read


def test_disk_cache_holds_the_shard_memory_mapped_and_deletes_it(prepared, tmp_path):
    store, meta = prepared
    cols = ["features", "label"]
    with DiskShardCache(str(tmp_path), chunk_bytes=500) as cache:  # ~9 rows per chunk
        assert cache.path is None  # nothing made before the first load
        got = cache.load(store, "train", 1, 3, cols, metadata=meta)
        folder = cache.path
        assert os.path.dirname(folder) == str(tmp_path)
        assert sorted(os.listdir(folder)) == ["train-000.npy", "train-001.npy"]  # no .tmp left
        expected = read_shard(store, "train", 1, 3, cols, metadata=meta)
        for c in cols:
            assert isinstance(got[c], np.memmap) and not got[c].flags.writeable
            assert got[c].dtype == expected[c].dtype
            np.testing.assert_array_equal(got[c], expected[c])
        cache.load(store, "val", 1, 3, cols, metadata=meta)
        assert len(os.listdir(folder)) == 4
    assert not os.path.exists(folder)
    cache.close()  # twice is fine


def test_disk_cache_is_deleted_on_errors(prepared, tmp_path):
    store, meta = prepared
    with pytest.raises(RuntimeError, match="boom"):
        with DiskShardCache(str(tmp_path)) as cache:
            cache.load(store, "train", 0, 2, ["features"], metadata=meta)
            raise RuntimeError("boom")
    assert os.listdir(tmp_path) == []
    with DiskShardCache(str(tmp_path)) as cache:  # a bad shard: refused before any folder
        with pytest.raises(CerebroValueError, match="shard must be in"):
            cache.load(store, "train", 5, 2, ["features"], metadata=meta)
    assert os.listdir(tmp_path) == []


# ---------------------------------------------------------------------- end to end
def seeded_gen(params):
    """The e2e estimator, with initial weights that depend on the configuration only."""
    import keras

    keras.utils.set_random_seed(params["units"])
    return estimator_gen_fn(params)


def _fit(spark, store, data_cache):
    backend = SparkBackend(spark.sparkContext, num_workers=1, verbose=0, data_cache=data_cache)
    search = GridSearch(
        backend,
        store,
        seeded_gen,
        {"units": hp_choice([4, 8]), "lr": hp_choice([3e-2])},
        num_epochs=2,
        feature_columns=["features"],
        label_columns=["label"],
        seed=3,
        verbose=0,
        experiment_name="cache",  # the same model ids, hence the same shuffles
    )
    return search.fit_on_prepared_data().get_all_model_history(), backend.worker_info()


@pytest.mark.slow
def test_a_search_on_the_disk_cache_equals_one_in_memory(spark, tmp_path):
    """One worker, so the hop order is the same in both runs: the histories must be equal."""
    store = LocalStore(str(tmp_path / "memory"))
    SparkBackend(spark.sparkContext, num_workers=1, verbose=0).prepare_data(
        store, make_df(spark, 1000), 0.25, feature_columns=["features"], label_columns=["label"]
    )
    shutil.copytree(tmp_path / "memory", tmp_path / "disk")  # the same prepared data
    memory, memory_info = _fit(spark, store, "auto")  # small data: "auto" keeps it in memory
    disk, disk_info = _fit(spark, LocalStore(str(tmp_path / "disk")), "disk")

    assert memory_info[0]["cache"] == "memory" and memory_info[0]["cache_dir"] is None
    assert disk_info[0]["cache"] == "disk"
    rows = ("train_rows", "val_rows", "bytes")
    assert [disk_info[0][k] for k in rows] == [memory_info[0][k] for k in rows]
    folder = disk_info[0]["cache_dir"]
    env = spark.sparkContext._jvm.org.apache.spark.SparkEnv.get()
    local_dirs = [str(d) for d in env.blockManager().diskBlockManager().localDirs()]
    assert os.path.dirname(folder) in local_dirs  # the executor's local dir
    assert not os.path.exists(folder)  # deleted when the worker ended
    assert sorted(disk) == sorted(memory) == ["cache-000", "cache-001"]
    for model, history in memory.items():
        assert len(history["val_loss"]) == 2 and len(history["train_loss"]) == 2
        assert disk[model] == history, model
