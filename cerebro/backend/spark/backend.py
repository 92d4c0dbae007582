"""SparkBackend: Model Hopper Parallelism on Spark executors.

The workers are one Spark *barrier* job of ``num_workers`` long-running tasks, submitted from a
driver thread: barrier mode gang-schedules them (all or none). Each task connects back to the
driver over an authenticated :mod:`multiprocessing.connection` channel, loads its data partition
once and serves train/eval requests. The driver thread that runs :meth:`SparkBackend.run` waits
on the worker connections (event-driven, no polling sleeps) and hands each free worker its next
task from the scheduler.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
import uuid
from collections.abc import Callable
from multiprocessing.connection import wait
from typing import Any

from cerebro.backend._base import Backend, TrainingJob
from cerebro.backend.spark import channel
from cerebro.backend.spark.shard_cache import check_data_cache
from cerebro.backend.spark.worker import WorkerConfig, barrier_partition_fn
from cerebro.exceptions import (
    CerebroTypeError,
    CerebroValueError,
    ClusterCapacityError,
    WorkerError,
)
from cerebro.storage import Store

logger = logging.getLogger(__name__)


def _check_positive_int(name: str, value: Any, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise CerebroTypeError(f"{name} must be an int >= {minimum}, got {value!r}")
    if value < minimum:
        raise CerebroValueError(f"{name} must be >= {minimum}, got {value}")
    return value


def _default_spark_context() -> Any:
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    from pyspark.sql import SparkSession

    return SparkSession.builder.getOrCreate().sparkContext


class SparkBackend(Backend):
    """Runs data preparation and MOP training on a Spark cluster.

    Args:
        spark_context: the SparkContext to use (default: the active session's, or a new one).
        num_workers: workers = data partitions (default: Spark's default parallelism). The
            cluster needs that many free task slots at once.
        start_timeout: seconds to wait for all workers to connect before giving up.
        worker_threads: TensorFlow threads per worker (default: ``spark.task.cpus``).
        driver_host: the address workers connect to and the driver listens on (default:
            ``spark.driver.host``); the driver never listens on all interfaces.
        seed: base seed of data shuffling and the scheduler's tie-breaks.
        verbose: 0 silent, 1 a progress bar.
        max_worker_restarts: how often the workers are restarted after one of them is lost
            (its process or executor died) before ``fit`` gives up. In-flight sub-epochs run
            again from the last committed checkpoints, so nothing is lost or counted twice.
        data_cache: where each worker keeps its train and validation shard: ``"memory"``
            (numpy arrays), ``"disk"`` (memory-mapped ``.npy`` files in a temporary folder
            under the executor's local directory, deleted when the worker ends) or ``"auto"``
            (memory when the shards fit half the host's available memory shared by the
            workers on it, else disk). Training gives the same result either way.
    """

    def __init__(
        self,
        spark_context: Any = None,
        *,
        num_workers: int | None = None,
        start_timeout: float = 120.0,
        worker_threads: int | None = None,
        driver_host: str | None = None,
        seed: int = 0,
        verbose: int = 1,
        max_worker_restarts: int = 3,
        data_cache: str = "auto",
    ) -> None:
        if num_workers is not None:
            _check_positive_int("num_workers", num_workers)
        _check_positive_int("max_worker_restarts", max_worker_restarts, minimum=0)
        if worker_threads is not None:
            _check_positive_int("worker_threads", worker_threads)
        if not isinstance(start_timeout, int | float) or start_timeout <= 0:
            raise CerebroValueError(f"start_timeout must be a number > 0, got {start_timeout!r}")
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise CerebroTypeError(f"seed must be an int, got {seed!r}")
        check_data_cache(data_cache)
        if spark_context is not None:
            from pyspark import SparkContext

            if not isinstance(spark_context, SparkContext):
                raise CerebroTypeError(
                    "spark_context must be a pyspark.SparkContext (e.g. spark.sparkContext) or "
                    f"None, got {type(spark_context).__module__}.{type(spark_context).__name__}"
                )
        self.spark_context = (
            spark_context if spark_context is not None else _default_spark_context()
        )
        self._num_workers = num_workers or self.spark_context.defaultParallelism
        self.start_timeout = float(start_timeout)
        self.worker_threads = worker_threads
        self.driver_host = driver_host
        self.seed = seed
        self.verbose = verbose
        self.max_worker_restarts = max_worker_restarts
        self.data_cache = data_cache

    @property
    def num_workers(self) -> int:
        return self._num_workers

    def worker_info(self) -> dict[int, dict[str, Any]]:
        """The workers of the current (or last) run: host, pid, attempt, rows, bytes, cache."""
        pool = getattr(self, "_pool", None)
        return {w: dict(v) for w, v in pool.workers.items()} if pool else {}

    @property
    def worker_restarts(self) -> int:
        """How often the workers of the current (or last) run were restarted after a loss."""
        pool = getattr(self, "_pool", None)
        return pool.restarts if pool else 0

    # ------------------------------------------------------------------ data
    def prepare_data(
        self,
        store: Store,
        df: Any,
        validation: float | str = 0.25,
        feature_columns: list[str] | None = None,
        label_columns: list[str] | None = None,
        *,
        overwrite: bool = False,
        seed: int = 42,
    ) -> Any:
        """Materialise ``df`` into ``store`` as Petastorm Parquet split for ``num_workers``.

        Preparing the same data again is skipped; a different dataset in the same store is
        refused unless ``overwrite=True``. Returns the dataset's metadata.
        """
        from cerebro.backend.spark.prepare import prepare_data

        if not isinstance(store, Store):
            raise CerebroTypeError(f"store must be a cerebro.storage.Store, got {store!r}")
        return prepare_data(
            self.spark_context,
            store,
            df,
            num_workers=self.num_workers,
            validation=validation,
            feature_columns=feature_columns,
            label_columns=label_columns,
            overwrite=overwrite,
            seed=seed,
        )

    # ------------------------------------------------------------------ training
    def _host(self) -> str:
        if self.driver_host:
            return self.driver_host
        return self.spark_context.getConf().get("spark.driver.host", "127.0.0.1")

    def _threads(self) -> int:
        if self.worker_threads:
            return self.worker_threads
        return int(self.spark_context.getConf().get("spark.task.cpus", "1"))

    def free_slots(self) -> int | None:
        """How many tasks the cluster can run at once now (None if Spark does not say)."""
        try:
            jsc = self.spark_context._jsc.sc()
            profile = jsc.resourceProfileManager().defaultResourceProfile()
            return int(jsc.maxNumConcurrentTasks(profile))
        except Exception:  # an internal Spark API: fall back to no check rather than fail
            logger.debug("could not read the cluster's task slots", exc_info=True)
            return None

    def _check_capacity(self) -> None:
        deadline = time.monotonic() + min(15.0, self.start_timeout)
        slots = self.free_slots()
        while slots is not None and slots < self.num_workers and time.monotonic() < deadline:
            time.sleep(0.25)  # executors may still be registering right after start-up
            slots = self.free_slots()
        if slots is not None and slots < self.num_workers:
            raise ClusterCapacityError(
                f"num_workers={self.num_workers} needs {self.num_workers} task slots at once, "
                f"but the cluster has {slots}: lower num_workers or add executors/cores"
            )

    def run(
        self,
        store: Store,
        job: TrainingJob,
        *,
        feature_columns: list[str],
        label_columns: list[str],
        has_validation: bool = True,
    ) -> Any:
        """Train the models ``job`` hands out with MOP; returns the :class:`ModelHopper`."""
        from cerebro.backend.hopper import ModelHopper
        from cerebro.backend.scheduler import Scheduler

        self._check_capacity()
        scheduler = Scheduler(self.num_workers, seed=self.seed, validate=has_validation)
        progress = _progress_bar(self.verbose)
        hopper = ModelHopper(
            store,
            job,
            scheduler,
            seed=self.seed,
            has_validation=has_validation,
            progress=progress,
        )
        pool = self._pool = _WorkerPool(
            self, store, feature_columns, label_columns, has_validation
        )
        try:
            _drive(hopper, scheduler, pool, self.max_worker_restarts)
        except BaseException:  # including KeyboardInterrupt: leave no Spark job behind
            pool.shutdown(graceful=False)
            raise
        else:
            pool.shutdown(graceful=True)
        finally:
            hopper.close()
            if progress is not None:
                progress.close()
        return hopper


class WorkersLost(WorkerError):
    """The workers' Spark job lost a worker (process or executor died); they can be restarted."""


def _drive(hopper: Any, scheduler: Any, pool: _WorkerPool, max_restarts: int) -> None:
    """Run the event loop, restarting the workers after a loss up to ``max_restarts`` times."""
    while True:
        try:
            if not pool.conns:
                # The driver builds the first models and their checkpoints while the workers
                # start (import TensorFlow, load their shards): neither waits for the other.
                pool.start(while_starting=hopper.admit)
                hopper.worker_stats = {w: dict(v) for w, v in pool.workers.items()}
            _serve(hopper, scheduler, pool)
            return
        except WorkersLost as e:
            pool.restarts += 1
            restarts = pool.restarts
            if restarts > max_restarts:
                raise WorkerError(
                    f"workers were lost {restarts} times, more than max_worker_restarts="
                    f"{max_restarts}; last loss: {e}. Every committed checkpoint is in the store"
                ) from e
            logger.warning(
                "%s; restarting the workers (restart %d of at most %d)", e, restarts, max_restarts
            )
            pool.stop_job()
            hopper.on_workers_lost()


def _serve(hopper: Any, scheduler: Any, pool: _WorkerPool) -> None:
    """Keep every worker busy until no model has work left (event-driven, no polling)."""
    hopper.admit()
    while True:
        for worker, task in scheduler.assign():
            pool.send(worker, task, hopper.message_for(task))
        if hopper.finished:
            if hopper.admit() == 0:
                return
            continue
        for worker, kind, payload in pool.receive():
            task = pool.running.pop(worker)
            if kind == channel.RESULT:
                payload.update(pool.timing(worker))
                hopper.on_result(worker, task, payload)
            else:
                hopper.on_task_error(worker, task, f"{payload[0]}: {payload[1]}")
            hopper.admit()


class _WorkerPool:
    """The barrier job of the workers and the connections to them.

    One channel (address and key) serves the whole run; each (re)start of the workers is a new
    barrier job in its own job group, so that it can be cancelled alone.
    """

    def __init__(
        self,
        backend: SparkBackend,
        store: Store,
        feature_columns: list[str],
        label_columns: list[str],
        has_validation: bool,
    ) -> None:
        self.backend = backend
        self.sc = backend.spark_context
        self.store = store
        self.feature_columns = feature_columns
        self.label_columns = label_columns
        self.has_validation = has_validation
        self.group = ""
        self.conns: dict[int, Any] = {}
        self.running: dict[int, Any] = {}
        #: Per worker: host, pid, attempt, then what it reported after loading its data.
        self.workers: dict[int, dict[str, Any]] = {}
        self._sent_at: dict[int, float] = {}
        self._received_at: dict[int, float] = {}
        self._chan: channel.DriverChannel | None = None
        self._thread: threading.Thread | None = None
        self._job_error: BaseException | None = None
        #: How often the workers were restarted after a loss in this run.
        self.restarts = 0

    def start(self, while_starting: Callable[[], Any] | None = None) -> None:
        """Launch the barrier job and wait until every worker has loaded its data.

        ``while_starting`` runs on the driver after the launch, before the wait.
        """
        if self._chan is None:
            self._chan = channel.DriverChannel(self.backend._host())
        config = WorkerConfig(
            address=self._chan.address,
            authkey=self._chan.authkey,
            store=self.store,
            num_workers=self.backend.num_workers,
            feature_columns=list(self.feature_columns),
            label_columns=list(self.label_columns),
            threads=self.backend._threads(),
            has_validation=self.has_validation,
            data_cache=self.backend.data_cache,
        )
        self.group = f"cerebro-{uuid.uuid4().hex[:8]}"
        self._job_error = None
        self._thread = _job_thread(self, config)
        self._thread.start()
        if while_starting is not None:
            while_starting()
        self._await_workers()

    def _await_workers(self) -> None:
        deadline = time.monotonic() + self.backend.start_timeout
        pending: dict[Any, int] = {}
        w = self.backend.num_workers
        while len(self.conns) < w:
            self._raise_if_job_failed()
            left = deadline - time.monotonic()
            if left <= 0:
                raise WorkerError(
                    f"only {len(self.conns)} of {w} workers were ready within "
                    f"start_timeout={self.backend.start_timeout:.0f}s"
                )
            conn = self._chan.next_connection(timeout=min(0.5, left))
            if conn is not None:
                _, (partition, attempt, host, pid) = conn.recv()
                pending[conn] = partition
                self.workers[partition] = {"host": host, "pid": pid, "attempt": attempt}
            for conn in wait(list(pending), timeout=0) if pending else []:
                partition = pending.pop(conn)
                try:
                    kind, payload = conn.recv()
                except (EOFError, OSError) as e:
                    raise WorkersLost(f"worker {partition} died while loading its data") from e
                if kind == channel.FATAL:
                    raise WorkerError(f"worker {partition} could not load its data:\n{payload}")
                self.workers[partition].update(payload)
                self.conns[partition] = conn
        logger.info("%d workers ready: %s", w, self.workers)

    def _raise_if_job_failed(self) -> None:
        if self._job_error is not None:
            raise WorkersLost(f"the workers' Spark job failed: {self._job_error}")
        if self._thread is not None and not self._thread.is_alive():
            raise WorkersLost("the workers' Spark job ended unexpectedly")

    def send(self, worker: int, task: Any, message: tuple[str, Any]) -> None:
        self.running[worker] = task
        self._sent_at[worker] = time.perf_counter()
        try:
            self.conns[worker].send(message)
        except OSError as e:
            raise WorkersLost(f"lost the connection to worker {worker}: {e!r}") from e

    def timing(self, worker: int) -> dict[str, float]:
        """When ``worker``'s last task was sent and answered (``time.perf_counter``)."""
        sent, received = self._sent_at[worker], self._received_at[worker]
        return {"sent_at": sent, "received_at": received, "round_trip_seconds": received - sent}

    def receive(self) -> list[tuple[int, str, Any]]:
        """Block until at least one worker answers; return all answers available."""
        by_conn = {c: w for w, c in self.conns.items()}
        while True:
            ready = wait(list(by_conn), timeout=1.0)
            if ready:
                break
            self._raise_if_job_failed()  # a liveness check, not a poll for work
        out = []
        for conn in ready:
            w = by_conn[conn]
            try:
                kind, payload = conn.recv()
            except (EOFError, OSError) as e:
                raise WorkersLost(f"lost worker {w} ({self.workers.get(w)}): {e!r}") from e
            self._received_at[w] = time.perf_counter()
            out.append((w, kind, payload))
        return out

    def stop_job(self, graceful: bool = False) -> None:
        """Stop the workers: politely when idle, else cancel their Spark job at once."""
        for conn in self.conns.values():
            try:
                conn.send((channel.STOP, None))
            except OSError:
                pass
        if self._thread is not None:
            self._thread.join(timeout=30 if graceful else 0)
            if self._thread.is_alive():
                self.sc.cancelJobGroup(self.group)
                self._thread.join(timeout=60)
            if self._thread.is_alive():
                logger.warning("the workers' Spark job did not stop within 60 s")
        for conn in self.conns.values():
            conn.close()
        self.conns.clear()
        self.running.clear()

    def shutdown(self, graceful: bool) -> None:
        """Stop the workers and the channel."""
        self.stop_job(graceful)
        if self._chan is not None:
            self._chan.close()
            self._chan = None


def _job_thread(pool: _WorkerPool, config: WorkerConfig) -> threading.Thread:
    from pyspark import InheritableThread

    def target() -> None:
        sc = pool.sc
        sc.setJobGroup(pool.group, "Cerebro MOP workers", interruptOnCancel=True)
        try:
            n = config.num_workers
            sc.parallelize(range(n), n).barrier().mapPartitions(
                barrier_partition_fn(config)
            ).collect()
        except BaseException as e:  # reported to the driver loop
            pool._job_error = e

    return InheritableThread(target=target, name="cerebro-workers", daemon=True)


def _progress_bar(verbose: int) -> Any:
    if not verbose:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=0, desc="Cerebro MOP", unit="sub-epoch", dynamic_ncols=True)
