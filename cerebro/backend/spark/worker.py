"""The worker: a long-running Spark barrier task that holds one data partition.

Each worker connects back to the driver, loads train and validation shard ``i`` once into
memory, then trains and evaluates whatever model the driver sends until told to stop. It keeps
built Keras models in memory between hops so that a model coming back only reloads its state.
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


def _nbytes(arrays: dict[str, Any]) -> int:
    return int(sum(a.nbytes for a in arrays.values()))


def run_worker(config: WorkerConfig, partition: int, attempt: int = 0) -> None:
    """Serve the driver as worker ``partition`` until it says stop."""
    conn = channel.connect(config.address, config.authkey)
    try:
        conn.send((channel.HELLO, (partition, attempt, socket.gethostname(), os.getpid())))
        try:
            trainer, ready = _load(config, partition)
        except BaseException:
            conn.send((channel.FATAL, traceback.format_exc()))
            raise
        conn.send((channel.READY, ready))
        _serve(conn, trainer)
    finally:
        conn.close()


def _load(config: WorkerConfig, partition: int) -> tuple[Any, dict[str, Any]]:
    from cerebro.keras.trainer import KerasTrainer, configure_threads
    from cerebro.storage.dataset import read_shard

    configure_threads(config.threads)
    t0 = time.perf_counter()
    columns = list(config.feature_columns) + list(config.label_columns)
    train = read_shard(config.store, "train", partition, config.num_workers, columns=columns)
    val = (
        read_shard(config.store, "val", partition, config.num_workers, columns=columns)
        if config.has_validation
        else {}
    )
    trainer = KerasTrainer(config.store, train, val, config.feature_columns, config.label_columns)
    ready = {
        "train_rows": len(next(iter(train.values()))),
        "val_rows": len(next(iter(val.values()))) if val else 0,
        "bytes": _nbytes(train) + _nbytes(val),
        "load_seconds": time.perf_counter() - t0,
    }
    return trainer, ready


def _serve(conn: Any, trainer: Any) -> None:
    while True:
        kind, payload = conn.recv()
        if kind == channel.STOP:
            return
        t0 = time.perf_counter()
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
        run_worker(config, ctx.partitionId(), ctx.attemptNumber())
        yield ctx.partitionId()

    return fn
