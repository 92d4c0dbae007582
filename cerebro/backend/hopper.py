"""The driver's side of Model Hopper Parallelism, independent of the cluster manager.

:class:`ModelHopper` turns scheduler tasks into worker messages and worker results into model
state: it keeps each model's JSON state and checkpoint chain in the store, aggregates metrics
over partitions, writes TensorBoard scalars, and tells the search (a
:class:`~cerebro.backend._base.TrainingJob`) after every epoch. A backend only moves its messages.

Checkpoint chain: every training hop reads the model's latest state and writes
``ckpt-<n+1>-<tag>.state``, a state file (raw variables, a few ms each way); the hop that
completes an epoch also writes ``ckpt-<n+1>-<tag>.keras``, a full Keras archive. A model's
``state.json`` names both its latest state (``checkpoint``) and its latest archive
(``model_checkpoint``: workers that do not hold the model build it from that, then load the
state). A hop is committed when ``state.json`` (written atomically) names its files, and only
then are the files it replaces deleted, so a crash at any moment leaves a state that names
complete files. Models end at an epoch's end, so when a model is done its last archive holds
its final state; it is renamed to ``checkpoint.keras``.
"""

from __future__ import annotations

import logging
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from cerebro.backend._base import ModelRequest, TrainingJob
from cerebro.backend.scheduler import ModelDone, PassDone, Scheduler, Task
from cerebro.keras.checkpoint import STATE_SUFFIX
from cerebro.keras.metrics import aggregate_metrics
from cerebro.keras.tensorboard import close_loggers, write_epoch_scalars, write_hparams
from cerebro.storage import Store

logger = logging.getLogger(__name__)

RUNNING, FINISHED, STOPPED, FAILED = "running", "finished", "stopped", "failed"
# The fields of a task's result that go into ModelHopper.task_log.
_LOGGED = (
    "rows",
    "seconds",
    "load_seconds",
    "save_seconds",
    "load",
    "worker_seconds",
    "round_trip_seconds",
    "sent_at",
    "received_at",
)


@dataclass
class ModelRun:
    """Driver-side bookkeeping of one model (mirrored to ``runs/<model_id>/state.json``)."""

    request: ModelRequest
    spec: Any
    checkpoint: str
    model_checkpoint: str = ""
    status: str = RUNNING
    hops: int = 0
    epochs_done: int = 0
    sub_epochs: list[tuple[int, int]] = field(default_factory=list)
    pass_results: dict[str, list[dict[str, Any]]] = field(
        default_factory=lambda: {"train": [], "eval": []}
    )
    history: dict[str, list[float]] = field(default_factory=dict)
    train_seconds: float = 0.0
    started_at: float = field(default_factory=time.time)
    finished_at: float | None = None
    error: str | None = None

    def __post_init__(self) -> None:
        self.model_checkpoint = self.model_checkpoint or self.checkpoint

    def state(self) -> dict[str, Any]:
        return {
            "model_id": self.request.model_id,
            "params": self.request.params,
            "num_epochs": self.request.num_epochs,
            "status": self.status,
            "checkpoint": self.checkpoint,
            "model_checkpoint": self.model_checkpoint,
            "hops": self.hops,
            "epochs_done": self.epochs_done,
            "sub_epochs": [list(s) for s in self.sub_epochs],
            "history": self.history,
            "train_seconds": self.train_seconds,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "error": self.error,
            # Metrics of the current epoch's finished train tasks, so that a resumed model
            # still reports the whole epoch's training metrics.
            "train_pass": [
                {"metrics": r["metrics"], "rows": r["rows"]} for r in self.pass_results["train"]
            ],
        }

    @classmethod
    def from_state(cls, request: ModelRequest, spec: Any, state: dict[str, Any]) -> ModelRun:
        """Rebuild a model's bookkeeping from its committed ``state.json`` (to resume it)."""
        run = cls(request, spec, state["checkpoint"], state.get("model_checkpoint", ""))
        run.hops = state["hops"]
        run.epochs_done = state["epochs_done"]
        run.sub_epochs = [(e, p) for e, p in state["sub_epochs"]]
        run.history = {k: list(v) for k, v in state["history"].items()}
        run.train_seconds = state["train_seconds"]
        run.started_at = state["started_at"]
        run.pass_results["train"] = list(state.get("train_pass", []))
        return run

    def resume_point(self, num_workers: int, has_validation: bool) -> dict[str, Any]:
        """Where the scheduler picks this model up: epoch, pass and partitions already done."""
        done = {p for e, p in self.sub_epochs if e == self.epochs_done}
        if len(done) == num_workers and has_validation:
            # The train pass is complete; its eval pass is re-run whole (evaluation is pure).
            return {"start_epoch": self.epochs_done, "phase": "eval", "done_partitions": ()}
        return {"start_epoch": self.epochs_done, "phase": "train", "done_partitions": done}


class ModelHopper:
    """Moves models through the scheduler and keeps their state in the store.

    Args:
        store: where checkpoints, states and logs go.
        job: the search that hands out models and hears their metrics.
        scheduler: the MOP scheduler (one per run).
        seed: base seed of the per-sub-epoch shuffles.
        has_validation: whether an eval pass follows each training pass.
        progress: a tqdm-like bar (``update``, ``total``, ``refresh``) or None.
    """

    def __init__(
        self,
        store: Store,
        job: TrainingJob,
        scheduler: Scheduler,
        *,
        seed: int,
        has_validation: bool,
        progress: Any = None,
    ) -> None:
        self.store = store
        self.job = job
        self.scheduler = scheduler
        self.seed = seed
        self.has_validation = has_validation
        self.progress = progress
        self.runs: dict[str, ModelRun] = {}
        self.hop_seconds: list[float] = []
        #: One record per finished task (timings and the worker's load kind), for profiling.
        self.task_log: list[dict[str, Any]] = []
        #: What each worker reported after loading its data (rows, bytes, load_seconds).
        self.worker_stats: dict[int, dict[str, Any]] = {}
        # Per worker (= partition): models done since its last message.
        self._forget: dict[int, set[str]] = {}

    # ------------------------------------------------------------------ admission
    def admit(self) -> int:
        """Ask the job for new models and register them; returns how many were added."""
        from cerebro.keras.trainer import create_initial_checkpoint

        running = sum(r.status == RUNNING for r in self.runs.values())
        requests = self.job.next_models(running)
        for req in requests:
            if req.model_id in self.runs:
                raise ValueError(f"model id {req.model_id!r} was handed out twice")
            if req.resume_state is not None:
                run = ModelRun.from_state(req, req.estimator.worker_spec(), req.resume_state)
                if not self.store.exists(run.model_checkpoint):  # stopped between rename and
                    final = self.store.get_checkpoint_path(req.model_id)  # commit
                    run.checkpoint = run.model_checkpoint = final
                point = run.resume_point(self.scheduler.num_workers, self.has_validation)
                if point["phase"] == "eval" and run.pass_results["train"]:
                    # Stopped after the pass's last hop was committed but before its metrics
                    # were: they are all in the state, so record them now.
                    self._record_pass(run, "train")
                logger.info("resuming model %s at %s", req.model_id, point)
            else:
                ckpt = self._ckpt_url(req.model_id, 0) + ".keras"
                create_initial_checkpoint(req.estimator, self.store, req.model_id, ckpt)
                run = ModelRun(req, req.estimator.worker_spec(), ckpt)
                point = {}
                logger.info("started model %s with %s", req.model_id, req.params)
            self.runs[req.model_id] = run
            self._commit(run)
            self.scheduler.add_model(req.model_id, req.num_epochs, **point)
            if self.progress is not None:
                self.progress.total = (self.progress.total or 0) + self._tasks_per_model(req)
                self.progress.refresh()
        return len(requests)

    def _tasks_per_model(self, req: ModelRequest) -> int:
        passes = 2 if self.has_validation else 1
        return req.num_epochs * self.scheduler.num_workers * passes

    # ------------------------------------------------------------------ messages
    def message_for(self, task: Task) -> tuple[str, dict[str, Any]]:
        """The worker message that runs ``task``."""
        run = self.runs[task.model_id]
        common = {
            # Models that ended since this worker's last task: it can drop their built copies.
            "forget": sorted(self._forget.pop(task.partition, ())),
            "model_id": task.model_id,
            "spec": run.spec,
            "checkpoint_in": run.checkpoint,
            "model_in": run.model_checkpoint,
            "partition": task.partition,
        }
        if task.kind == "train":
            # A fresh name per dispatch: a task re-run after a worker loss never races the
            # lost attempt for the same file.
            base = self._ckpt_url(task.model_id, run.hops + 1, uuid.uuid4().hex[:8])
            # A model is on one worker at a time, so this hop ends the epoch when every other
            # partition of the epoch is done. Models end only at an epoch's end; a full archive
            # is written where the model may end.
            ends_epoch = (
                sum(e == task.epoch for e, _ in run.sub_epochs) == self.scheduler.num_workers - 1
            )
            may_end = run.request.may_stop_early or task.epoch == run.request.num_epochs - 1
            return "train", {
                **common,
                "checkpoint_out": base + STATE_SUFFIX,
                "keras_out": base + ".keras" if ends_epoch and may_end else None,
                "epoch": task.epoch,
                "seed": self.seed,
            }
        return "eval", common

    def on_result(self, worker: int, task: Task, result: dict[str, Any]) -> None:
        """Commit a finished task and react to the events it completes."""
        t0 = time.perf_counter()
        run = self.runs[task.model_id]
        run.pass_results[task.kind].append(result)
        run.train_seconds += result.get("seconds", 0.0)
        self.hop_seconds.append(result.get("load_seconds", 0.0) + result.get("save_seconds", 0.0))
        if task.kind == "train" and run.status == RUNNING:
            replaced = {run.checkpoint, run.model_checkpoint}
            run.checkpoint = result["checkpoint"]
            run.model_checkpoint = result.get("keras_checkpoint") or run.model_checkpoint
            run.hops += 1
            run.sub_epochs.append((task.epoch, task.partition))
            self._commit(run)
            for url in replaced - {run.checkpoint, run.model_checkpoint}:
                self.store.delete(url)
        elif task.kind == "train":  # the model stopped while this hop ran: drop its output
            for url in (result["checkpoint"], result.get("keras_checkpoint")):
                if url:
                    self.store.delete(url)
        if self.progress is not None:
            self.progress.update(1)
        self._handle_events(self.scheduler.complete(worker, task))
        self.task_log.append(
            {
                "model_id": task.model_id,
                "kind": task.kind,
                "worker": worker,
                "epoch": task.epoch,
                "partition": task.partition,
                **{k: result[k] for k in _LOGGED if k in result},
                "driver_seconds": time.perf_counter() - t0,
            }
        )

    def on_task_error(self, worker: int, task: Task, error: str) -> None:
        """A task raised (e.g. the loss became NaN): the model fails, the others go on."""
        run = self.runs[task.model_id]
        logger.warning("model %s failed on partition %d: %s", task.model_id, task.partition, error)
        if run.status == RUNNING:
            run.status, run.error = FAILED, error
        if self.progress is not None:
            self.progress.update(1)
        self._handle_events(self.scheduler.fail(worker, task))

    def _handle_events(self, events: list[Any]) -> None:
        for ev in events:
            if isinstance(ev, PassDone):
                self._on_pass_done(ev)
            elif isinstance(ev, ModelDone):
                self._on_model_done(ev.model_id)

    @staticmethod
    def _record_pass(run: ModelRun, kind: str) -> None:
        """Append a finished pass's metrics (aggregated over partitions) to the history."""
        results, run.pass_results[kind] = run.pass_results[kind], []
        prefix = "train_" if kind == "train" else "val_"
        for name, value in aggregate_metrics(results).items():
            run.history.setdefault(prefix + name, []).append(float(value))

    def _on_pass_done(self, ev: PassDone) -> None:
        run = self.runs[ev.model_id]
        self._record_pass(run, ev.kind)
        if ev.kind == "train" and self.has_validation:
            self._commit(run)  # the train metrics are in; the epoch ends after its eval pass
            return
        run.epochs_done = ev.epoch + 1
        self._commit(run)
        metrics = {k: v[-1] for k, v in run.history.items()}
        self._log_epoch(run, ev.epoch, metrics)
        if run.status == RUNNING and not self.job.on_epoch_end(ev.model_id, ev.epoch, metrics):
            logger.info("model %s stopped early after epoch %d", ev.model_id, ev.epoch + 1)
            run.status = STOPPED
            self._handle_events(self.scheduler.stop_model(ev.model_id))

    def _on_model_done(self, model_id: str) -> None:
        run = self.runs[model_id]
        if run.status == RUNNING:
            run.status = FINISHED
        run.finished_at = time.time()
        final = self.store.get_checkpoint_path(model_id)
        if run.model_checkpoint != final:
            self.store.delete(final)
            self.store.rename(run.model_checkpoint, final)
            run.checkpoint = run.model_checkpoint = final
        self._commit(run)
        run_path = self.store.get_run_path(model_id)
        for name in self.store.listdir(run_path):  # outputs of attempts lost with a worker
            if name.startswith("ckpt-"):
                self.store.delete(f"{run_path}/{name}")
        close_loggers(self.store, model_id)
        for worker in range(self.scheduler.num_workers):
            self._forget.setdefault(worker, set()).add(model_id)
        self.job.on_model_end(model_id, run.status, run.error)

    # ------------------------------------------------------------------ state
    def _ckpt_url(self, model_id: str, hop: int, tag: str = "init") -> str:
        """The name of hop ``hop``'s files, without the suffix."""
        return f"{self.store.get_run_path(model_id)}/ckpt-{hop:05d}-{tag}"

    def on_workers_lost(self) -> None:
        """Every worker is gone: their running tasks go back to their models, to run again."""
        self._handle_events(self.scheduler.requeue_all())

    def _commit(self, run: ModelRun) -> None:
        self.store.write_json(self.store.get_run_state_path(run.request.model_id), run.state())

    def _log_epoch(self, run: ModelRun, epoch: int, metrics: dict[str, float]) -> None:

        if epoch == 0:
            write_hparams(self.store, run.request.model_id, run.request.params, list(metrics))
        write_epoch_scalars(self.store, run.request.model_id, epoch, metrics)

    def close(self) -> None:
        """Flush and close every TensorBoard file of this run."""
        close_loggers(self.store)

    @property
    def finished(self) -> bool:
        """True when no model has work left."""
        return self.scheduler.is_done
