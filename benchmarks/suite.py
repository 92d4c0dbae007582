"""The benchmark suite: Cerebro's MOP against the ideal and the ways users do this today.

One command::

    .venv/bin/python benchmarks/suite.py [--medium | --quick] [--out DIR]

writes ``DIR/RESULTS.md`` (``RESULTS_medium.md``, ``RESULTS_quick.md``), PNG plots and a JSON of
every raw figure under ``DIR/results/`` (``DIR`` defaults to ``benchmarks/``). Full: about 20
minutes on 2 cores; ``--medium``: a few minutes; ``--quick``: CI-sized, a minute or two.

Two workloads, an MLP on synthetic tabular data and a small CNN on generated 28x28 images,
each trained with W = 1 and W = 2 workers (``local[W]``, one TensorFlow thread per worker) by:

* **ideal**: the sum over configurations of pure compute (one process, in-memory numpy arrays,
  one ``fit`` per configuration with validation each epoch, the workers' thread count), / W;
  also with Keras' default ``steps_per_execution`` and measured with W processes at once;
* **sequential**: one process training the configurations one after another with all cores;
* **task parallel** (Hyperopt ``SparkTrials`` style): one Spark task per configuration, each
  reading and holding the full data;
* **Cerebro MOP**: ``GridSearch.fit_on_prepared_data`` on a ``SparkBackend``.

Then scaling (configurations, rows, model size, all with MOP at W = 2), the cost of a hop
against the model's parameter count (two ``KerasTrainer`` objects passing one model back and
forth through checkpoints, as ``hop_profile.py`` does) and the input pipeline's rows/s. Every
comparison is a ratio of figures measured in the same run. See benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import datetime
import json
import logging
import math
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _bench import (  # noqa: E402
    HERE,
    NUM_FEATURES,
    SPACE,
    build_model,
    child_result,
    grid,
    machine_info,
    make_estimator_gen_fn,
    recording_backend_cls,
    run_child,
    run_search,
    synthetic_dataframe,
    train_in_memory,
    versions,
)

log = logging.getLogger("benchmarks.suite")

IMAGE_SIDE = 28
IMAGE_CLASSES = 4
CNN_SPACE = {"filters": [8, 16], "lr": [1e-3, 3e-3], "batch_size": [64]}
HOP_FEATURES = 64
HOP_BATCH = 256
SUB_EPOCH_ROWS = 100_000
TARGET_EFFICIENCY = 0.90
TARGET_HOP_SHARE = 0.05
TARGET_HOP_MAX_PARAMS = 1_000_000

# Sizes per mode. Scaling runs use MOP at W=2; "rows" lists the row counts of the rows
# scaling (the largest is the MLP workload's own data); configs and model size run on
# ``scale_rows`` rows.
MODES: dict[str, dict[str, Any]] = {
    "full": {
        "mlp_rows": 300_000,
        "mlp_space": SPACE,
        "mlp_epochs": 3,
        "cnn_rows": 16_000,
        "cnn_space": CNN_SPACE,
        "cnn_epochs": 2,
        "scale_epochs": 2,
        "scale_rows": 100_000,
        "rows": [50_000, 100_000, 300_000],
        "configs": [2, 4, 8, 16],
        "units": [32, 128, 512, 1024],
        "units_configs": 2,
        "hop_params": [1e4, 3e4, 1e5, 3e5, 1e6, 3e6, 1e7],
        "hop_rows_cap": 100_000,
        "hop_shard_rows": 512,
        "baselines_together": False,
        "timeout_s": 2400,
    },
    "medium": {
        "mlp_rows": 40_000,
        "mlp_space": SPACE,
        "mlp_epochs": 3,
        "cnn_rows": 3_000,
        "cnn_space": CNN_SPACE,
        "cnn_epochs": 2,
        "scale_epochs": 2,
        "scale_rows": 20_000,
        "rows": [20_000, 40_000],
        "configs": [2, 8],
        "units": [32, 256],
        "units_configs": 2,
        "hop_params": [1e4, 1e5, 1e6],
        "hop_rows_cap": 20_000,
        "hop_shard_rows": 256,
        "baselines_together": False,
        "timeout_s": 900,
    },
    "quick": {
        "mlp_rows": 3_000,
        "mlp_space": {"units": [32, 128], "lr": [1e-3], "batch_size": [256]},
        "mlp_epochs": 1,
        "cnn_rows": 400,
        "cnn_space": {"filters": [4], "lr": [1e-3, 3e-3], "batch_size": [64]},
        "cnn_epochs": 1,
        "scale_epochs": 1,
        "scale_rows": 3_000,
        "rows": [3_000],
        "configs": [1, 2],
        "units": [32],
        "units_configs": 1,
        "hop_params": [1e4, 1e5],
        "hop_rows_cap": 2_000,
        "hop_shard_rows": 128,
        "baselines_together": True,
        "timeout_s": 300,
    },
}


# ---------------------------------------------------------------------- workloads
def build_cnn(params: dict[str, Any]) -> Any:
    """A small CNN on flat 784-float images: two conv/pool blocks and a softmax."""
    import keras

    inputs = keras.Input(shape=(IMAGE_SIDE * IMAGE_SIDE,), name="features")
    h = keras.layers.Reshape((IMAGE_SIDE, IMAGE_SIDE, 1))(inputs)
    h = keras.layers.Conv2D(params["filters"], 3, activation="relu")(h)
    h = keras.layers.MaxPooling2D()(h)
    h = keras.layers.Conv2D(2 * params["filters"], 3, activation="relu")(h)
    h = keras.layers.MaxPooling2D()(h)
    h = keras.layers.Flatten()(h)
    outputs = keras.layers.Dense(IMAGE_CLASSES, activation="softmax", name="label")(h)
    return keras.Model(inputs, outputs)


def cnn_estimator_gen_fn(params: dict[str, Any]) -> Any:
    """``estimator_gen_fn`` of the CNN workload (Adam, sparse cross-entropy, accuracy)."""
    import keras

    from cerebro.keras import SparkEstimator

    return SparkEstimator(
        model=build_cnn(params),
        optimizer=keras.optimizers.Adam(params["lr"]),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
        batch_size=params["batch_size"],
    )


def hop_model_units(params: float) -> int:
    """Width of the two hidden layers that gives an MLP on 64 features ~``params`` weights."""
    # params = 64u + u + u*u + u + u + 1 = u^2 + 67u + 1
    return max(1, round((-67 + math.sqrt(67 * 67 + 4 * (params - 1))) / 2))


def hop_estimator(units: int) -> Any:
    """The MLP of the hop profile (64 features, two hidden layers of ``units``, Adam)."""
    import keras

    from cerebro.keras import SparkEstimator

    return SparkEstimator(
        model=build_model({"units": units}, HOP_FEATURES),
        optimizer=keras.optimizers.Adam(1e-3),
        loss="binary_crossentropy",
        batch_size=HOP_BATCH,
    )


@dataclass(frozen=True)
class Workload:
    """One workload of the suite: its data, configurations and ``estimator_gen_fn``."""

    name: str
    rows: int
    epochs: int
    space: dict[str, list[Any]]
    gen_fn: Callable[[dict[str, Any]], Any]

    def configs(self) -> list[dict[str, Any]]:
        return grid(self.space)


def workloads(sizes: dict[str, Any]) -> list[Workload]:
    """The MLP and the CNN workloads at this mode's sizes."""
    return [
        Workload(
            "mlp",
            sizes["mlp_rows"],
            sizes["mlp_epochs"],
            sizes["mlp_space"],
            make_estimator_gen_fn(NUM_FEATURES),
        ),
        Workload(
            "cnn",
            sizes["cnn_rows"],
            sizes["cnn_epochs"],
            sizes["cnn_space"],
            cnn_estimator_gen_fn,
        ),
    ]


def _images_batch(ids: Any, seed: int) -> tuple[Any, Any]:
    """Noisy stripes whose orientation is the class: 0 horizontal, 1 vertical, 2 and 3
    diagonal. Random frequency, phase, contrast and pixel noise make a linear model fail and a
    small CNN learn it."""
    import numpy as np

    n = len(ids)
    rng = np.random.default_rng([seed, int(ids[0]) if n else 0])
    labels = rng.integers(0, IMAGE_CLASSES, n).astype("int32")
    yy, xx = np.mgrid[0:IMAGE_SIDE, 0:IMAGE_SIDE].astype("float32")
    coords = np.stack([yy, xx, (xx + yy) / math.sqrt(2), (xx - yy) / math.sqrt(2)])  # (4,28,28)
    freq = rng.uniform(0.5, 1.2, (n, 1, 1)).astype("float32")
    phase = rng.uniform(0, 2 * math.pi, (n, 1, 1)).astype("float32")
    amp = rng.uniform(0.4, 1.0, (n, 1, 1)).astype("float32")
    images = amp * np.sin(freq * coords[labels] + phase)
    images += rng.normal(0, 0.6, images.shape).astype("float32")
    return images.reshape(n, -1).astype("float32"), labels


def image_dataframe(spark: Any, rows: int, seed: int = 11) -> Any:
    """``features`` (784 floats: one 28x28 image) and ``label`` (0-3), generated by Spark."""

    def generate(batches: Any) -> Any:
        import pandas as pd

        for pdf in batches:
            images, labels = _images_batch(pdf["id"].to_numpy(), seed)
            yield pd.DataFrame({"features": list(images), "label": labels})

    return spark.range(0, rows, numPartitions=4).mapInPandas(
        generate, "features array<float>, label int"
    )


# ---------------------------------------------------------------------- child processes
def child_main(config_json: str) -> None:
    """Child process: measure what needs a clean TensorFlow (thread pools), print results."""
    cfg = json.loads(config_json)
    from cerebro.keras.trainer import configure_threads

    configure_threads(cfg["threads"])  # before TensorFlow runs anything
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    results: dict[str, Any] = {"threads": cfg["threads"], "pid": os.getpid()}
    sizes = MODES[cfg["mode"]]
    by_name = {w.name: w for w in workloads(sizes)}
    for task in cfg["tasks"]:
        kind = task["kind"]
        if kind == "train":
            results[task["key"]] = _child_train(by_name[task["workload"]], task)
        elif kind == "hops":
            results[task["key"]] = hop_profile(task, sizes)
        elif kind == "input":
            results[task["key"]] = input_rates(task)
        else:
            raise ValueError(f"unknown child task {kind!r}")
    print("SUITE " + json.dumps(results), flush=True)


def _child_train(workload: Workload, task: dict[str, Any]) -> dict[str, Any]:
    from cerebro.storage import Store
    from cerebro.storage.dataset import read_shard

    store = Store.create(task["store"])
    t0 = time.perf_counter()
    train = read_shard(store, "train", 0, 1, columns=["features", "label"])
    val = read_shard(store, "val", 0, 1, columns=["features", "label"])
    read_s = time.perf_counter() - t0
    configs = workload.configs()
    out: dict[str, Any] = {"read_s": read_s, "train_rows": len(train["label"])}
    out["val_rows"] = len(val["label"])
    t0 = time.perf_counter()
    feed = "dataset" if task["strict"] else "numpy"  # the ideal / a plain user script
    out["configs"] = train_in_memory(
        workload.gen_fn, configs, train, val, workload.epochs, strict=task["strict"], feed=feed
    )
    out["wall_s"] = time.perf_counter() - t0
    if task.get("defaults"):
        compiled = {c["steps_per_execution"] for c in out["configs"]}
        if compiled == {1}:
            # The workers' compiled step is Keras' default: the same measurement, not re-run.
            out["defaults"] = {"same_as_ideal": True, "configs": out["configs"]}
        else:
            configs_d = train_in_memory(
                workload.gen_fn, configs, train, val, workload.epochs, steps_per_execution=1
            )
            out["defaults"] = {"same_as_ideal": False, "configs": configs_d}
    return out


def hop_profile(task: dict[str, Any], sizes: dict[str, Any]) -> list[dict[str, Any]]:
    """Per-hop cost and sub-epoch time against the parameter count, through KerasTrainer.

    For each size, two trainers (A, B: the two workers of W=2) hold small shards and pass one
    model back and forth with the files the driver asks for (``ModelHopper.message_for``):
    each hop writes the model's state, and the hop that ends an epoch also a ``.keras``
    archive (as with early stopping on; without it only a model's last hop does, so this is
    the worst case). The first visit to each trainer is a full load, later ones reload the
    state only (a worker's steady state). A third trainer then times one warm sub-epoch on
    ``n`` rows (100k, or fewer for big models: then scaled to 100k rows by the measured rows/s).
    """
    import numpy as np

    from cerebro.keras import KerasTrainer, create_initial_checkpoint
    from cerebro.storage import LocalStore

    store = LocalStore(tempfile.mkdtemp(prefix="cerebro-suite-hops-"))
    rng = np.random.default_rng(0)
    state_suffix = _state_suffix()

    def shard(n: int) -> dict[str, Any]:
        x = rng.normal(size=(n, HOP_FEATURES)).astype("float32")
        return {"features": x, "label": (x[:, 0] * x[:, 1] > 0).astype("int32")}

    def hop(trainer: Any, files: dict[str, str], base: str, epoch: int, part: int, end: bool):
        kwargs: dict[str, Any] = {}
        if state_suffix != ".keras":
            kwargs = {"model_in": files["archive"], "keras_out": base + ".keras" if end else None}
        r = trainer.train(mid, spec, files["state"], base + state_suffix, epoch, part, 0, **kwargs)
        old = set(files.values())
        files["state"] = r["checkpoint"]
        files["archive"] = r.get("keras_checkpoint") or (
            r["checkpoint"] if state_suffix == ".keras" else files["archive"]
        )
        for url in old - set(files.values()):
            store.delete(url)
        return r

    out = []
    try:
        for target in task["params"]:
            units = hop_model_units(target)
            est = hop_estimator(units)
            mid = f"p{int(target)}"
            run = store.get_run_path(mid)
            init = create_initial_checkpoint(est, store, mid, f"{run}/h000.keras")
            files = {"state": init, "archive": init}
            params = int(est.model.count_params())
            spec = est.worker_spec()
            small = sizes["hop_shard_rows"]
            pair = [KerasTrainer(store, shard(small), None, ["features"], ["label"]) for _ in "AB"]
            hops = []
            for i in range(8):  # A full, B full, then A, B, A, B, A, B from their state
                r = hop(pair[i % 2], files, f"{run}/h{i + 1:03d}", i // 2, i % 2, i % 2 == 1)
                hops.append(
                    {k: r[k] for k in ("load", "load_seconds", "save_seconds", "seconds")}
                    | {"archive": bool(r.get("keras_checkpoint")) or state_suffix == ".keras"}
                )
            n = int(min(sizes["hop_rows_cap"], SUB_EPOCH_ROWS, max(1024, 4e9 / params)))
            big = KerasTrainer(store, shard(n), None, ["features"], ["label"])
            hop(big, files, f"{run}/w1", 4, 0, False)  # builds and traces the model
            timed = hop(big, files, f"{run}/w2", 5, 0, False)  # cached: a warm sub-epoch
            state = [h["load_seconds"] for h in hops if h["load"] == "state"]
            full = [h["load_seconds"] for h in hops if h["load"] == "full"]
            plain = [h["save_seconds"] for h in hops if not h["archive"]]
            archive = [h["save_seconds"] for h in hops if h["archive"]]
            rec = {
                "target": target,
                "units": units,
                "params": params,
                "state_file": state_suffix,
                "checkpoint_mb": os.path.getsize(store.local_path(files["archive"])) / 1e6,
                "state_load_ms": 1000 * statistics.median(state),
                "full_load_ms": 1000 * statistics.median(full),
                "state_save_ms": 1000 * statistics.median(plain) if plain else None,
                "archive_save_ms": 1000 * statistics.median(archive),
                # Per hop: with W=2 every second hop also writes the epoch's archive (early
                # stopping on; the worst case).
                "save_ms": 1000
                * (
                    (statistics.median(plain) + statistics.median(archive)) / 2
                    if plain
                    else statistics.median(archive)
                ),
                "timed_rows": n,
                "timed_fit_s": timed["seconds"],
                "timed_load": timed["load"],
                "rows_per_s": n / timed["seconds"],
                "sub_epoch_s": timed["seconds"] * SUB_EPOCH_ROWS / n,
                "sub_epoch_measured": n >= SUB_EPOCH_ROWS,
                "hops": hops,
            }
            _hop_overheads(rec)
            out.append(rec)
            store.delete(run)
    finally:
        shutil.rmtree(store.local_path(store.prefix_path), ignore_errors=True)
    return out


def _state_suffix() -> str:
    """The suffix of the state files the driver asks workers for (``.keras`` before the
    trainer wrote state files)."""
    import inspect

    from cerebro.keras import KerasTrainer, checkpoint

    if "keras_out" in inspect.signature(KerasTrainer.train).parameters:
        return getattr(checkpoint, "STATE_SUFFIX", ".keras")
    return ".keras"


def input_rates(task: dict[str, Any]) -> dict[str, Any]:
    """Rows/s reading the prepared training Parquet: Petastorm's batch reader and read_shard."""
    import numpy as np
    from petastorm import make_batch_reader

    from cerebro.storage import Store
    from cerebro.storage.dataset import read_shard

    store = Store.create(task["store"])
    url = store.get_train_data_path()
    t0 = time.perf_counter()
    rows = nbytes = 0
    with make_batch_reader(
        url, num_epochs=1, reader_pool_type="thread", workers_count=task["readers"]
    ) as reader:
        for batch in reader:
            feats = np.stack(list(batch.features)).astype("float32")  # what a model needs
            rows += len(feats)
            nbytes += feats.nbytes + np.asarray(batch.label).nbytes
    petastorm_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    arrays = read_shard(store, "train", 0, 1, columns=["features", "label"])
    shard_s = time.perf_counter() - t0
    shard_rows = len(arrays["label"])
    return {
        "rows": rows,
        "petastorm_s": petastorm_s,
        "petastorm_rows_per_s": rows / petastorm_s,
        "petastorm_mb_per_s": nbytes / 1e6 / petastorm_s,
        "petastorm_readers": task["readers"],
        "read_shard_rows": shard_rows,
        "read_shard_s": shard_s,
        "read_shard_rows_per_s": shard_rows / shard_s,
        "read_shard_mb_per_s": sum(a.nbytes for a in arrays.values()) / 1e6 / shard_s,
    }


def run_children(
    mode: str, threads: int, tasks: list[dict[str, Any]], processes: int, timeout: float
) -> list[dict[str, Any]]:
    """Run ``processes`` identical child processes at once; their results, in order."""
    cfg = {"mode": mode, "threads": threads, "tasks": tasks}
    cmd = [sys.executable, os.path.abspath(__file__), "--child", json.dumps(cfg)]
    if processes == 1:
        return [run_child(cmd, "SUITE ", timeout=timeout)]
    procs = [
        subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(processes)
    ]
    try:
        return [child_result(cmd, p, *p.communicate(timeout=timeout), "SUITE ") for p in procs]
    finally:
        for p in procs:  # after a failure or a timeout, leave none running
            if p.poll() is None:
                p.kill()
                p.communicate()


# ---------------------------------------------------------------------- Spark runs
def spark_session(workers: int) -> Any:
    """A ``local[workers]`` session (one task slot, one TensorFlow thread per worker)."""
    from pyspark.sql import SparkSession

    spark = (
        SparkSession.builder.master(f"local[{workers}]")
        .appName(f"cerebro-suite-w{workers}")
        .config("spark.ui.enabled", "false")
        .config("spark.driver.memory", "3g")
        .config("spark.sql.shuffle.partitions", "4")
        .getOrCreate()
    )
    spark.sparkContext.setLogLevel("ERROR")
    # The task-parallel tasks call train_in_memory from _bench: ship it to the Python workers.
    spark.sparkContext.addPyFile(os.path.join(HERE, "_bench.py"))
    return spark


def warm_python_workers(sc: Any, workers: int) -> float:
    """Start ``workers`` Spark Python workers and import TensorFlow in them; returns seconds.

    Run before every measured Spark run, so that MOP and task parallel both start with warm
    Python workers (Spark reuses them), whichever runs first. Runs no TensorFlow op, so the
    workers can still set their thread pools.
    """

    def imports(_: Any) -> int:
        import keras  # noqa: F401
        import tensorflow  # noqa: F401

        time.sleep(0.3)  # hold the slot so that the W tasks land on W Python workers
        return os.getpid()

    t0 = time.perf_counter()
    sc.parallelize(range(workers), workers).map(imports).collect()
    return time.perf_counter() - t0


def run_mop(
    spark: Any, store: Any, workload: Workload, space: dict[str, Any], epochs: int, name: str
) -> dict[str, Any]:
    """One MOP search (GridSearch on a SparkBackend) after warming the Python workers."""
    sc = spark.sparkContext
    workers = sc.defaultParallelism
    warm = warm_python_workers(sc, workers)
    backend = recording_backend_cls()(sc, num_workers=workers, verbose=0)
    stats = run_search(backend, store, workload.gen_fn, space, epochs, name)
    stats["warmup_s"] = warm
    stats["num_workers"] = workers
    stats["threads"] = backend._threads()
    stats["configs"] = len(stats["models"])
    return stats


def run_task_parallel(spark: Any, store: Any, workload: Workload, threads: int) -> dict[str, Any]:
    """Hyperopt SparkTrials style: one Spark task per configuration, each on the full data."""
    sc = spark.sparkContext
    workers = sc.defaultParallelism
    warm = warm_python_workers(sc, workers)
    gen_fn, epochs = workload.gen_fn, workload.epochs

    def task(item: tuple[int, dict[str, Any]]) -> dict[str, Any]:
        started = time.time()
        index, params = item
        from cerebro.keras.trainer import configure_threads

        configure_threads(threads)
        import keras
        from _bench import train_in_memory

        from cerebro.storage.dataset import read_shard

        t0 = time.perf_counter()
        train = read_shard(store, "train", 0, 1, columns=["features", "label"])
        val = read_shard(store, "val", 0, 1, columns=["features", "label"])
        read_s = time.perf_counter() - t0
        keras.utils.clear_session()
        rec = train_in_memory(gen_fn, [params], train, val, epochs, strict=False, feed="numpy")[0]
        return {
            "index": index,
            "pid": os.getpid(),
            "started": started,
            "ended": time.time(),
            "read_s": read_s,
            "bytes": int(sum(a.nbytes for a in (*train.values(), *val.values()))),
            "build_s": rec["build_seconds"],
            "fit_s": rec["seconds"],
            "val_loss": rec["val_loss"],
        }

    configs = workload.configs()
    submitted = time.time()
    t0 = time.perf_counter()
    tasks = sc.parallelize(list(enumerate(configs)), len(configs)).map(task).collect()
    makespan = time.perf_counter() - t0
    for t in tasks:
        t["start_delay_s"] = t["started"] - submitted
        t["total_s"] = t["ended"] - t["started"]
        t["other_s"] = t["total_s"] - t["read_s"] - t["build_s"] - t["fit_s"]
    return {
        "makespan_s": makespan,
        "warmup_s": warm,
        "num_workers": workers,
        "threads": threads,
        "startup_s": min(t["started"] for t in tasks) - submitted,
        "tasks": sorted(tasks, key=lambda t: t["index"]),
        "bytes_per_task": max(t["bytes"] for t in tasks),
        "fit_s_total": sum(t["fit_s"] for t in tasks),
        "read_s_total": sum(t["read_s"] for t in tasks),
        "build_s_total": sum(t["build_s"] for t in tasks),
    }


def parquet_bytes(store: Any) -> int:
    """Bytes of the prepared training and validation Parquet files."""
    total = 0
    for url in (store.get_train_data_path(), store.get_val_data_path()):
        for root, _, files in os.walk(store.local_path(url)):
            total += sum(os.path.getsize(os.path.join(root, f)) for f in files)
    return total


def prepare(spark: Any, store: Any, df: Any) -> dict[str, Any]:
    """Prepare ``df`` into ``store`` for 2 workers (W=1 reads the same files as one shard)."""
    from cerebro.backend import SparkBackend

    backend = SparkBackend(spark.sparkContext, num_workers=2, verbose=0)
    t0 = time.perf_counter()
    meta = backend.prepare_data(
        store, df, validation=0.25, feature_columns=["features"], label_columns=["label"]
    )
    return {
        "prepare_s": time.perf_counter() - t0,
        "train_rows": meta.split_rows("train"),
        "val_rows": meta.split_rows("val"),
        "parquet_bytes": parquet_bytes(store),
        "store": store.prefix_path,
    }


# ---------------------------------------------------------------------- the suite
def _scaling_spaces(sizes: dict[str, Any]) -> dict[str, list[tuple[Any, dict[str, Any]]]]:
    """The MOP runs of the scaling section: (x value, GridSearch space) per axis."""
    lrs = [1e-3, 1e-2, 3e-3, 3e-2]

    def configs(k: int) -> dict[str, Any]:
        if k == 1:
            return {"units": [32], "lr": [1e-3], "batch_size": [256]}
        if k == 2:
            return {"units": [32, 128], "lr": [1e-3], "batch_size": [256]}
        return {"units": [32, 128], "lr": lrs[: k // 4], "batch_size": [128, 512]}

    base = configs(4) if 4 in sizes["configs"] or len(sizes["configs"]) > 2 else configs(2)
    return {
        "configs": [(k, configs(k)) for k in sizes["configs"]],
        "rows": [(r, base) for r in sizes["rows"]],
        "units": [
            (u, {"units": [u], "lr": lrs[: sizes["units_configs"]], "batch_size": [256]})
            for u in sizes["units"]
        ],
    }


def _mlp_params(units: int) -> int:
    return NUM_FEATURES * units + units + units * units + units + units + 1


def run_suite(args: argparse.Namespace) -> dict[str, Any]:
    """Run every measurement of the chosen mode; returns the raw report (JSON-able)."""
    mode = args.mode
    sizes = MODES[mode]
    t_suite = time.perf_counter()
    report: dict[str, Any] = {
        "mode": mode,
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "machine": machine_info(),
        "versions": versions(),
        "sizes": {k: v for k, v in sizes.items() if k not in ("timeout_s", "baselines_together")},
    }
    cores = os.cpu_count() or 1
    wls = workloads(sizes)
    root = args.store or tempfile.mkdtemp(prefix="cerebro-suite-")
    from cerebro.storage import LocalStore

    stores = {w.name: LocalStore(os.path.join(root, w.name)) for w in wls}
    row_stores = {r: LocalStore(os.path.join(root, f"rows{r}")) for r in sizes["rows"]}
    row_stores[sizes["mlp_rows"]] = stores["mlp"]
    scale_rows = sizes["scale_rows"]
    if scale_rows not in row_stores:
        row_stores[scale_rows] = LocalStore(os.path.join(root, f"rows{scale_rows}"))
    timeout = sizes["timeout_s"]
    phases: list[dict[str, Any]] = []
    report["phases"] = phases

    def phase(name: str, *fmt: Any) -> None:
        """Log the next step and note when it began and the load average then."""
        phases.append(
            {
                "phase": name % fmt,
                "at_s": round(time.perf_counter() - t_suite, 1),
                "loadavg_1min": os.getloadavg()[0],
            }
        )
        log.info(name, *fmt)

    spark = None
    try:
        # 1. Data, prepared once (for 2 workers; W=1 reads the same files as one shard).
        spark = spark_session(2)
        phase("preparing data")
        data = {
            "mlp": prepare(spark, stores["mlp"], synthetic_dataframe(spark, sizes["mlp_rows"])),
            "cnn": prepare(spark, stores["cnn"], image_dataframe(spark, sizes["cnn_rows"])),
        }
        for r, st in sorted(row_stores.items()):
            if r != sizes["mlp_rows"]:
                data[f"rows{r}"] = prepare(spark, st, synthetic_dataframe(spark, r))
        report["data"] = data
        import keras  # noqa: F401  (a user's script has imported it before fit)

        # 2. Per workload, the single-machine baselines (child processes with clean
        # TensorFlow thread pools) right before its Spark runs, so that the figures compared
        # are measured minutes apart, not a quarter of an hour (the load drifts). The quick
        # mode measures both workloads' baselines together (fewer TensorFlow start-ups).
        report["sequential_threads"] = cores
        report["baselines"] = {}
        runs: dict[str, dict[str, Any]] = {}
        groups = [wls] if sizes["baselines_together"] else [[w] for w in wls]
        for group in groups:
            names = "+".join(w.name for w in group)
            tasks = [
                {
                    "kind": "train",
                    "key": w.name,
                    "workload": w.name,
                    "store": stores[w.name].prefix_path,
                    "strict": True,
                    "defaults": True,
                }
                for w in group
            ]
            phase("%s: ideal (1 thread)", names)
            ideal = run_children(mode, 1, tasks, 1, timeout)[0]
            phase("%s: ideal with 2 processes at once", names)
            concurrent = run_children(mode, 1, tasks, 2, timeout)
            phase("%s: sequential (%d threads)", names, cores)
            seq_tasks = [dict(t, strict=False, defaults=False) for t in tasks]
            sequential = run_children(mode, cores, seq_tasks, 1, timeout)[0]
            for w in group:
                report["baselines"][w.name] = {
                    "ideal": ideal[w.name],
                    "concurrent": [c[w.name] for c in concurrent],
                    "sequential": sequential[w.name],
                }
            # 3. MOP and task parallel on local[W]: MLP at W=2 then W=1, CNN at W=1 then
            # W=2 (one session switch between them), so scaling follows on local[2].
            for w in group:
                for workers in (2, 1) if w.name == "mlp" else (1, 2):
                    if spark.sparkContext.defaultParallelism != workers:
                        spark.stop()
                        spark = spark_session(workers)
                    phase("W=%d %s: MOP", workers, w.name)
                    name = f"{w.name}-w{workers}"
                    mop = run_mop(spark, stores[w.name], w, w.space, w.epochs, name)
                    phase("W=%d %s: task parallel", workers, w.name)
                    tp = run_task_parallel(spark, stores[w.name], w, mop["threads"])
                    runs[name] = {"mop": mop, "task_parallel": tp}

        # 4. Scaling with MOP at W=2 (the session is local[2] after the CNN's runs).
        phase("scaling")
        main_mlp = (sizes["mlp_rows"], wls[0].space, wls[0].epochs, runs["mlp-w2"]["mop"])
        report["scaling"] = run_scaling(spark, sizes, wls[0], row_stores, data, main_mlp)

        # 5. Hop cost and input pipeline, in a child process (one TensorFlow thread).
        phase("hop profile, input pipeline")
        tasks = [{"kind": "hops", "key": "hops", "params": sizes["hop_params"]}] + [
            {
                "kind": "input",
                "key": f"input_{w.name}",
                "store": stores[w.name].prefix_path,
                "readers": cores,
            }
            for w in wls
        ]
        extra = run_children(mode, 1, tasks, 1, timeout)[0]
        report["hops"] = extra["hops"]
        report["input"] = {w.name: extra[f"input_{w.name}"] for w in wls}
        report["runs"] = runs
        phase("done")
    finally:
        if spark is not None:
            spark.stop()
        if not args.store and not args.keep_store:
            shutil.rmtree(root, ignore_errors=True)
    report["machine"]["loadavg_end"] = list(os.getloadavg())
    report["suite_s"] = time.perf_counter() - t_suite
    report["summary"] = summarize(report, wls)
    return report


def run_scaling(
    spark: Any,
    sizes: dict[str, Any],
    mlp: Workload,
    row_stores: dict[int, Any],
    data: dict[str, Any],
    main_run: tuple[int, dict[str, Any], int, dict[str, Any]],
) -> dict[str, Any]:
    """MOP makespan as configurations, rows and model size grow (W = 2).

    A point whose rows, configurations and epochs equal the MLP workload's is that run.
    """
    epochs = sizes["scale_epochs"]
    rows0, space0, epochs0, run0 = main_run
    done = {(rows0, json.dumps(space0, sort_keys=True), epochs0): run0}
    out: dict[str, Any] = {"epochs": epochs, "base_rows": sizes["scale_rows"]}
    for axis, points in _scaling_spaces(sizes).items():
        out[axis] = []
        for x, space in points:
            rows = x if axis == "rows" else sizes["scale_rows"]
            key = (rows, json.dumps(space, sort_keys=True), epochs)
            if key not in done:
                log.info("scaling %s=%s", axis, x)
                name = f"scale-{len(done)}"
                done[key] = run_mop(spark, row_stores[rows], mlp, space, epochs, name)
            m = done[key]
            train_rows = (
                data["mlp"]["train_rows"]
                if rows == sizes["mlp_rows"]
                else data[f"rows{rows}"]["train_rows"]
            )
            units = space["units"]
            out[axis].append(
                {
                    "x": x,
                    "rows": rows,
                    "train_rows": train_rows,
                    "configs": m["configs"],
                    "params": [_mlp_params(u) for u in units],
                    "makespan_s": m["makespan_s"],
                    "startup_s": m["startup_s"],
                    "compute_per_worker_s": m["fit_s_total"] / m["num_workers"],
                    "hops": m["hops"],
                    "per_hop": m["per_hop"],
                }
            )
        out[axis + "_fit"] = linear_fit(
            [p["x"] if axis != "units" else max(p["params"]) for p in out[axis]],
            [p["makespan_s"] for p in out[axis]],
        )
    return out


def linear_fit(xs: list[float], ys: list[float]) -> dict[str, float] | None:
    """Least squares ``y = intercept + slope * x`` (None with fewer than two distinct x)."""
    if len(set(xs)) < 2:
        return None
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    sxx = sum((x - mx) ** 2 for x in xs)
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sxx
    return {"intercept": my - slope * mx, "slope": slope}


# ---------------------------------------------------------------------- summary
def _hop_overheads(rec: dict[str, Any]) -> None:
    """Add a hop record's overheads: with early stopping (an archive at every epoch's end,
    every second hop at W=2) and without (only a model's last hop writes an archive)."""
    rec["hop_overhead_ms"] = rec["state_load_ms"] + rec["save_ms"]
    plain = rec["state_save_ms"] if rec["state_save_ms"] is not None else rec["save_ms"]
    rec["hop_overhead_plain_ms"] = rec["state_load_ms"] + plain


def summarize(report: dict[str, Any], wls: list[Workload]) -> dict[str, Any]:
    """The comparison table (ratios within this run) and the targets."""
    rows = []
    for w in wls:
        b = report["baselines"][w.name]
        ideal_sum = sum(c["seconds"] for c in b["ideal"]["configs"])
        defaults_sum = sum(c["seconds"] for c in b["ideal"]["defaults"]["configs"])
        per_config = zip(*[[c["seconds"] for c in p["configs"]] for p in b["concurrent"]])
        concurrent_sum = sum(statistics.fmean(ts) for ts in per_config)
        spe = sorted({c["steps_per_execution"] for c in b["ideal"]["configs"]})
        seq = b["sequential"]
        seq_s = sum(c["build_seconds"] + c["seconds"] for c in seq["configs"])
        for workers in (1, 2):
            run = report["runs"][f"{w.name}-w{workers}"]
            mop, tp = run["mop"], run["task_parallel"]
            ideal_s = ideal_sum / workers
            conc_s = (concurrent_sum if workers > 1 else ideal_sum) / workers
            row = {
                "workload": w.name,
                "workers": workers,
                "configs": len(w.configs()),
                "steps_per_execution": spe,
                "defaults_same": b["ideal"]["defaults"]["same_as_ideal"],
                "ideal_s": ideal_s,
                "ideal_defaults_s": defaults_sum / workers,
                "ideal_concurrent_s": conc_s,
                "sequential_s": seq_s,
                "task_parallel_s": tp["makespan_s"],
                "mop_s": mop["makespan_s"],
                "mop_startup_s": mop["startup_s"],
                "efficiency": ideal_s / mop["makespan_s"],
                "efficiency_defaults": defaults_sum / workers / mop["makespan_s"],
                "efficiency_concurrent": conc_s / mop["makespan_s"],
                "tp_efficiency": ideal_s / tp["makespan_s"],
                "mop_over_tp": mop["makespan_s"] / tp["makespan_s"],
                "sequential_over_mop": seq_s / mop["makespan_s"],
                "mop_bytes_per_worker": max(
                    (s.get("bytes") or 0) for s in mop["workers"].values()
                ),
                "tp_bytes_per_task": tp["bytes_per_task"],
                "parquet_bytes": report["data"][w.name]["parquet_bytes"],
                "hops": mop["hops"],
                "hop_overhead_ms": mop["per_hop"]["overhead_ms_train"]
                + mop["per_hop"]["driver_ms_train"],
            }
            rows.append(row)
    by = {(r["workload"], r["workers"]): r for r in rows}
    targets = []
    mlp2 = by[("mlp", 2)]
    targets.append(
        {
            "target": f"MOP efficiency >= {TARGET_EFFICIENCY:.2f} on the MLP, W=2 (ideal with "
            "the workers' compiled step)",
            "measured": f"{mlp2['efficiency']:.2f} (ideal {mlp2['ideal_s']:.1f} s / makespan "
            f"{mlp2['mop_s']:.1f} s); vs Keras defaults {mlp2['efficiency_defaults']:.2f}, "
            f"vs W concurrent {mlp2['efficiency_concurrent']:.2f}",
            "pass": mlp2["efficiency"] >= TARGET_EFFICIENCY,
        }
    )
    hops = [h for h in report["hops"] if h["params"] <= TARGET_HOP_MAX_PARAMS * 1.05]
    for key, case in (
        ("hop_overhead_plain_ms", "without early stopping: a state file per hop"),
        ("hop_overhead_ms", "with early stopping: also a .keras archive at each epoch's end"),
    ):
        worst = max(hops, key=lambda h: h[key] / 1000 / h["sub_epoch_s"])
        share = worst[key] / 1000 / worst["sub_epoch_s"]
        targets.append(
            {
                "target": f"per-hop overhead < {TARGET_HOP_SHARE:.0%} of the sub-epoch time, "
                f"models up to 1e6 parameters, {SUB_EPOCH_ROWS // 1000}k rows per partition "
                f"({case})",
                "measured": f"worst {share:.1%} at {worst['params']:,} parameters "
                f"({worst[key]:.0f} ms vs {worst['sub_epoch_s']:.2f} s)",
                "pass": share < TARGET_HOP_SHARE,
            }
        )
    for w in wls:
        r = by[(w.name, 2)]
        targets.append(
            {
                "target": f"MOP makespan <= task-parallel makespan, {w.name.upper()}, W=2",
                "measured": f"MOP {r['mop_s']:.1f} s vs task parallel "
                f"{r['task_parallel_s']:.1f} s (ratio {r['mop_over_tp']:.2f}); data per worker "
                f"{r['mop_bytes_per_worker'] / 1e6:.1f} MB vs per task "
                f"{r['tp_bytes_per_task'] / 1e6:.1f} MB",
                "pass": r["mop_s"] <= r["task_parallel_s"],
            }
        )
    return {"rows": rows, "targets": targets}


# ---------------------------------------------------------------------- main
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--medium", dest="mode", action="store_const", const="medium")
    group.add_argument("--quick", dest="mode", action="store_const", const="quick")
    parser.set_defaults(mode="full")
    parser.add_argument("--out", default=HERE, help="folder for RESULTS*.md and results/")
    parser.add_argument("--store", default=None, help="store folder (default: a temp folder)")
    parser.add_argument("--keep-store", action="store_true", help="keep the temp store")
    parser.add_argument(
        "--render",
        default=None,
        metavar="JSON",
        help="write the report again from a run's saved JSON, measuring nothing",
    )
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        child_main(args.child)
        return
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s: %(message)s")
    log.setLevel(logging.INFO)
    from _suite_report import write_report

    if args.render is not None:
        with open(args.render) as f:
            report = json.load(f)
        for rec in report["hops"]:
            _hop_overheads(rec)
        report["summary"] = summarize(report, workloads(MODES[report["mode"]]))
    else:
        report = run_suite(args)
    paths = write_report(report, args.out)
    log.info("wrote %s", ", ".join(paths))


if __name__ == "__main__":
    main()
