"""The worker: a long-running Spark barrier task that holds one data partition.

Each worker connects back to the driver, loads train and validation shard ``i`` once (into
memory when it fits, else into a local disk cache; see :mod:`cerebro.backend.spark.shard_cache`),
then trains and evaluates whatever model the driver sends until told to stop. It keeps built
Keras models in memory between hops so that a model coming back only reloads its state.
"""

from __future__ import annotations

import logging
import os
import socket
import time
import traceback
from dataclasses import dataclass
from typing import Any

from cerebro.backend.spark import channel
from cerebro.backend.spark.shard_cache import (
    DiskShardCache,
    available_memory,
    choose_cache,
    shard_nbytes,
    spark_local_dir,
)

logger = logging.getLogger(__name__)


@dataclass
class WorkerConfig:
    """Everything a worker needs, shipped to the executors inside the Spark closure."""

    address: tuple[str, int]
    authkey: bytes
    store: Any
    num_workers: int
    feature_columns: list[str]
    label_columns: list[str]
    threads: int
    has_validation: bool
    data_cache: str = "auto"


def _nbytes(arrays: dict[str, Any]) -> int:
    return int(sum(a.nbytes for a in arrays.values()))


def run_worker(
    config: WorkerConfig, partition: int, attempt: int = 0, workers_on_host: int | None = None
) -> None:
    """Serve the driver as worker ``partition`` until it says stop.

    ``workers_on_host`` (how many workers share this host; default: all of them) sizes the
    memory budget of ``data_cache="auto"``. A disk cache is deleted when the worker ends, also
    on errors.
    """
    conn = channel.connect(config.address, config.authkey)
    try:
        with DiskShardCache(spark_local_dir()) as disk:
            conn.send((channel.HELLO, (partition, attempt, socket.gethostname(), os.getpid())))
            try:
                trainer, ready = _load(config, partition, disk, workers_on_host)
            except BaseException:
                conn.send((channel.FATAL, traceback.format_exc()))
                raise
            conn.send((channel.READY, ready))
            _serve(conn, trainer)
    finally:
        conn.close()


def _load(
    config: WorkerConfig, partition: int, disk: DiskShardCache, workers_on_host: int | None
) -> tuple[Any, dict[str, Any]]:
    from cerebro.keras.trainer import KerasTrainer, configure_threads
    from cerebro.storage.dataset import load_metadata, read_shard

    configure_threads(config.threads)
    t0 = time.perf_counter()
    meta = load_metadata(config.store)
    columns = list(config.feature_columns) + list(config.label_columns)
    splits = ["train", "val"] if config.has_validation else ["train"]
    estimate = shard_nbytes(meta, partition, config.num_workers, columns, splits)
    available = available_memory()
    on_host = workers_on_host or config.num_workers
    cache = choose_cache(config.data_cache, estimate, available, on_host)
    logger.info(
        "worker %d keeps its data in %s (data_cache=%r; shards ~%d bytes, %s bytes available "
        "on the host for %d workers)",
        partition,
        cache,
        config.data_cache,
        estimate,
        available,
        on_host,
    )
    read = read_shard if cache == "memory" else disk.load
    shards = {
        split: read(config.store, split, partition, config.num_workers, columns, metadata=meta)
        for split in splits
    }
    train, val = shards["train"], shards.get("val", {})
    trainer = KerasTrainer(config.store, train, val, config.feature_columns, config.label_columns)
    ready = {
        "train_rows": len(next(iter(train.values()))),
        "val_rows": len(next(iter(val.values()))) if val else 0,
        "bytes": _nbytes(train) + _nbytes(val),
        "estimated_bytes": estimate,
        "cache": cache,
        "cache_dir": disk.path,
        "load_seconds": time.perf_counter() - t0,
    }
    return trainer, ready


def _serve(conn: Any, trainer: Any) -> None:
    while True:
        kind, payload = conn.recv()
        if kind == channel.STOP:
            return
        t0 = time.perf_counter()
        for model_id in payload.pop("forget", ()) if isinstance(payload, dict) else ():
            trainer.forget(model_id)
        try:
            if kind == channel.TRAIN:
                out = trainer.train(**payload)
            elif kind == channel.EVAL:
                out = trainer.evaluate(**payload)
            else:
                raise ValueError(f"unknown message kind {kind!r}")
        except Exception as e:  # the task failed; the worker and its data are fine
            conn.send((channel.ERROR, (type(e).__name__, str(e), traceback.format_exc())))
            continue
        out["worker_seconds"] = time.perf_counter() - t0  # the task's time on the worker
        conn.send((channel.RESULT, out))


def barrier_partition_fn(config: WorkerConfig):
    """The ``mapPartitions`` function of the barrier job that runs the workers."""

    def fn(_iterator):
        from pyspark import BarrierTaskContext

        ctx = BarrierTaskContext.get()
        try:
            addresses = [info.address for info in ctx.getTaskInfos()]
        except Exception:  # not told: assume every worker shares this host
            logger.debug("no barrier task addresses", exc_info=True)
            addresses = []
        on_host = workers_on_host(addresses, ctx.partitionId())
        run_worker(config, ctx.partitionId(), ctx.attemptNumber(), on_host)
        yield ctx.partitionId()

    return fn


def workers_on_host(addresses: list[str], index: int) -> int | None:
    """How many of the barrier tasks at ``addresses`` (``host:port``) share task ``index``'s
    host; None when ``index`` has no address."""
    if not 0 <= index < len(addresses):
        return None
    hosts = [a.rsplit(":", 1)[0] for a in addresses]
    return hosts.count(hosts[index])
