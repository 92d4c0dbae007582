"""The Model Hopper Parallelism (MOP) scheduler: which model trains on which worker next.

Worker ``i`` holds data partition ``i``. Every model trains epoch by epoch; an epoch is a *train
pass* (one train task on every partition, in any order) followed, when validation is on, by an
*eval pass* (one eval task on every partition). The scheduler hands out tasks so that:

* per epoch, every model trains (and is evaluated) on every partition exactly once;
* a worker runs one task at a time, and a model is on one worker at a time;
* models advance through epochs independently (no global barrier);
* it is work-conserving: after :meth:`Scheduler.assign`, no free worker is left while an idle
  model still owes that worker's partition in its current pass.

It is pure, event-driven logic (no threads, no clock, no Spark): the driver calls
:meth:`~Scheduler.assign` to fill free workers and reports what happened with
:meth:`~Scheduler.complete`, :meth:`~Scheduler.fail`, :meth:`~Scheduler.requeue` or
:meth:`~Scheduler.stop_model`; each of those returns the :data:`Event` objects it caused. The same
seed and the same sequence of calls give the same schedule. See ``docs/scheduler.md``.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Literal, NamedTuple

from cerebro.exceptions import CerebroTypeError, CerebroValueError

__all__ = [
    "Event",
    "ModelDone",
    "PassDone",
    "Progress",
    "Scheduler",
    "Task",
    "TaskLost",
]

logger = logging.getLogger(__name__)

TaskKind = Literal["train", "eval"]
ModelStatus = Literal["active", "stopping", "finished", "stopped", "failed"]

_KINDS = ("train", "eval")
_DONE_STATUSES = ("finished", "stopped", "failed")


@dataclass(frozen=True)
class Task:
    """One unit of work: train or evaluate one model on one partition (= worker) for one epoch.

    Attributes:
        model_id: the model.
        kind: ``"train"`` (one pass over the training shard) or ``"eval"`` (the validation shard).
        epoch: 0-based epoch this task belongs to.
        partition: the data partition, which is also the index of the worker that holds it.
    """

    model_id: str
    kind: TaskKind
    epoch: int
    partition: int


@dataclass(frozen=True)
class PassDone:
    """A model finished a train pass ("epoch trained") or an eval pass ("epoch validated")."""

    model_id: str
    kind: TaskKind
    epoch: int


@dataclass(frozen=True)
class ModelDone:
    """A model has no more work and nothing running; it gets no more tasks.

    Attributes:
        model_id: the model.
        epochs_completed: epochs whose passes (train, and eval when validating) all completed.
        status: ``"finished"`` (all epochs done), ``"stopped"`` (by :meth:`Scheduler.stop_model`)
            or ``"failed"`` (by :meth:`Scheduler.fail`).
    """

    model_id: str
    epochs_completed: int
    status: Literal["finished", "stopped", "failed"] = "finished"


@dataclass(frozen=True)
class TaskLost:
    """A running task was lost with its worker (:meth:`Scheduler.requeue`).

    Attributes:
        worker: the worker that died.
        task: the task it was running.
        requeued: True when the partition is owed again and the task will be handed out again;
            False when its model had been stopped (a :class:`ModelDone` follows).
    """

    worker: int
    task: Task
    requeued: bool


Event = PassDone | ModelDone | TaskLost


class Progress(NamedTuple):
    """Where a model stands: the pass it is in and the partitions that pass has completed.

    ``Scheduler.add_model(model_id, n, start_epoch=p.epoch, phase=p.kind,
    done_partitions=p.done)`` resumes a model from its progress ``p``. A finished model reports
    ``(num_epochs, "train", frozenset())``.
    """

    epoch: int
    kind: TaskKind
    done: frozenset[int]


@dataclass(eq=False)
class _Model:
    model_id: str
    num_epochs: int
    epoch: int
    kind: TaskKind
    owed: set[int]  # partitions the current pass has not completed (a running one included)
    order: int  # admission order: a stable, hash-independent order for tie-breaks
    running_on: int | None = None
    last_worker: int | None = None  # worker of the last completed task: the model is cached there
    status: ModelStatus = "active"

    @property
    def is_done(self) -> bool:
        return self.status in _DONE_STATUSES


def _check_int(name: str, value: object, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise CerebroTypeError(f"{name} must be an int >= {minimum}, got {value!r}")
    if value < minimum:
        raise CerebroValueError(f"{name} must be >= {minimum}, got {value!r}")
    return value


class Scheduler:
    """Assigns (model, partition) tasks to workers under Model Hopper Parallelism.

    When a worker ``w`` is free, its candidates are the idle models (active, not running) whose
    current pass still owes partition ``w``. Among them it prefers the model with the most tasks
    left (the partitions its current pass still owes plus all its later passes; among models in
    the same pass: the most partitions left in the pass), then the model whose last task ran on
    ``w`` (its state is cached there), then a seeded random choice. Most-work-left-first keeps
    models advancing at the same pace, so none is left alone at the end with the other workers
    idle. When several workers are free at once they are served in the order they became free,
    and a choice is only taken if the other free workers can still be given as many tasks as
    possible (a maximum bipartite matching of free workers to idle models), so one worker never
    takes the only model another free worker could have run.

    Args:
        num_workers: number of workers, which is also the number of data partitions.
        seed: seed of the random tie-break (``random.Random(seed)``).
        validate: whether every train pass is followed by an eval pass.

    Raises:
        CerebroValueError: ``num_workers < 1``.
        CerebroTypeError: ``num_workers`` or ``seed`` is not an int.
    """

    def __init__(self, num_workers: int, *, seed: int = 0, validate: bool = True) -> None:
        self._num_workers = _check_int("num_workers", num_workers, 1)
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise CerebroTypeError(f"seed must be an int, got {seed!r}")
        if not isinstance(validate, bool):
            raise CerebroTypeError(f"validate must be a bool, got {validate!r}")
        self._seed = seed
        self._validate = validate
        self._rng = random.Random(seed)
        self._models: dict[str, _Model] = {}
        self._running: dict[int, Task] = {}
        # Free workers in the order they became free (dict as an ordered set).
        self._free: dict[int, None] = dict.fromkeys(range(num_workers))

    # ------------------------------------------------------------------ introspection
    @property
    def num_workers(self) -> int:
        """Number of workers (and data partitions)."""
        return self._num_workers

    @property
    def seed(self) -> int:
        """Seed of the random tie-break."""
        return self._seed

    @property
    def validate(self) -> bool:
        """Whether each train pass is followed by an eval pass."""
        return self._validate

    @property
    def free_workers(self) -> list[int]:
        """Workers without a task, in the order :meth:`assign` serves them (longest free first)."""
        return list(self._free)

    @property
    def running(self) -> dict[int, Task]:
        """A copy of the running tasks, worker -> task."""
        return dict(self._running)

    @property
    def active_models(self) -> list[str]:
        """Ids of the models not done yet (including stopped ones whose last task still runs)."""
        return [m.model_id for m in self._models.values() if not m.is_done]

    @property
    def model_ids(self) -> list[str]:
        """Ids of all models ever added, in the order they were added."""
        return list(self._models)

    @property
    def is_done(self) -> bool:
        """True when no model has work left and no task is running."""
        return not self._running and all(m.is_done for m in self._models.values())

    def progress(self, model_id: str) -> Progress:
        """Where ``model_id`` stands: its current epoch, pass kind and completed partitions."""
        m = self._get(model_id)
        if m.status == "finished":
            return Progress(m.num_epochs, "train", frozenset())
        return Progress(m.epoch, m.kind, frozenset(range(self._num_workers)) - m.owed)

    def model_status(self, model_id: str) -> ModelStatus:
        """The model's state: ``active``, ``stopping`` (stopped while a task runs), ``finished``,
        ``stopped`` or ``failed``."""
        return self._get(model_id).status

    def __repr__(self) -> str:
        return (
            f"Scheduler(num_workers={self._num_workers}, seed={self._seed}, "
            f"validate={self._validate}, models={len(self._models)}, "
            f"running={len(self._running)}, active={len(self.active_models)})"
        )

    # ------------------------------------------------------------------ models
    def add_model(
        self,
        model_id: str,
        num_epochs: int,
        *,
        start_epoch: int = 0,
        done_partitions: Iterable[int] = (),
        phase: TaskKind = "train",
    ) -> None:
        """Add a model; it gets tasks from the next :meth:`assign` on. Allowed at any time.

        ``start_epoch``, ``phase`` and ``done_partitions`` resume a model mid-epoch: it continues
        with pass ``phase`` of epoch ``start_epoch``, which already completed ``done_partitions``
        (what :meth:`progress` reported).

        Raises:
            CerebroValueError: a duplicate or empty id, ``num_epochs < 1``, ``start_epoch`` not in
                ``[0, num_epochs)``, an unknown phase (or ``"eval"`` without validation), a
                partition out of range, or ``done_partitions`` covering the whole pass.
        """
        if not isinstance(model_id, str) or not model_id:
            raise CerebroValueError(f"model_id must be a non-empty str, got {model_id!r}")
        if model_id in self._models:
            raise CerebroValueError(
                f"model_id must be unique, but {model_id!r} was already added to the scheduler"
            )
        _check_int("num_epochs", num_epochs, 1)
        _check_int("start_epoch", start_epoch, 0)
        if start_epoch >= num_epochs:
            raise CerebroValueError(
                f"start_epoch must be < num_epochs={num_epochs} (a model with no epochs left "
                f"needs no scheduling), got {start_epoch}"
            )
        if phase not in _KINDS:
            raise CerebroValueError(f"phase must be 'train' or 'eval', got {phase!r}")
        if phase == "eval" and not self._validate:
            raise CerebroValueError(
                "phase must be 'train' when the scheduler runs without validation "
                "(validate=False), got 'eval'"
            )
        done = set()
        for p in done_partitions:
            if isinstance(p, bool) or not isinstance(p, int) or not 0 <= p < self._num_workers:
                raise CerebroValueError(
                    f"done_partitions must hold partitions in [0, {self._num_workers}), got {p!r}"
                )
            done.add(p)
        if len(done) == self._num_workers:
            raise CerebroValueError(
                f"done_partitions must not cover all {self._num_workers} partitions of the "
                f"{phase} pass (resume at the next pass instead), got {sorted(done)}"
            )
        self._models[model_id] = _Model(
            model_id=model_id,
            num_epochs=num_epochs,
            epoch=start_epoch,
            kind=phase,
            owed=set(range(self._num_workers)) - done,
            order=len(self._models),
        )
        logger.debug("added model %s: %d epochs, from %s", model_id, num_epochs, phase)

    def stop_model(self, model_id: str) -> list[Event]:
        """Stop a model (early stopping or failure): it gets no new tasks.

        A running task of the model may still complete (:meth:`complete` accepts it) or be lost
        (:meth:`requeue`); the model's :class:`ModelDone` comes with that. Stopping a model that
        is already stopping or done does nothing.

        Returns:
            ``[ModelDone(..., status="stopped")]`` when nothing of the model runs, else ``[]``.
        """
        m = self._get(model_id)
        if m.status != "active":
            return []
        if m.running_on is not None:
            m.status = "stopping"
            return []
        return [self._finish(m, "stopped")]

    # ------------------------------------------------------------------ tasks
    def assign(self) -> list[tuple[int, Task]]:
        """Give a task to every free worker that can get one now.

        Returns:
            ``(worker, task)`` pairs, in the order the workers were served. The driver must run
            each task on its worker and later report it with :meth:`complete`, :meth:`fail` or
            :meth:`requeue`.
        """
        free = list(self._free)
        if not free:
            return []
        idle = [m for m in self._models.values() if m.status == "active" and m.running_on is None]
        candidates = {w: [m for m in idle if w in m.owed] for w in free}
        pairs = _PreferenceMatcher(candidates, self._prefer).run()
        out = []
        for w, m in pairs:
            task = Task(m.model_id, m.kind, m.epoch, w)
            m.running_on = w
            self._running[w] = task
            del self._free[w]
            out.append((w, task))
        if out:
            logger.debug("assigned %s", out)
        return out

    def _tasks_left(self, m: _Model) -> int:
        """Tasks ``m`` still has to run: its current pass's owed partitions and later passes."""
        passes = 2 if self._validate else 1
        later = (m.num_epochs - m.epoch) * passes - (1 if m.kind == "train" else 2)
        return later * self._num_workers + len(m.owed)

    def _prefer(self, worker: int, models: list[_Model]) -> Iterator[_Model]:
        """``models`` in order of preference for ``worker``: most work left, cached, random.

        Lazy: each model yielded from a tie costs one draw, so the usual case (the first choice
        is taken) stays cheap with thousands of models.
        """
        groups: dict[tuple[int, bool], list[_Model]] = {}
        for m in models:  # in admission order: the draws do not depend on hashing
            key = (-self._tasks_left(m), m.last_worker != worker)
            groups.setdefault(key, []).append(m)
        for key in sorted(groups):
            tied = groups[key]
            while tied:
                i = self._rng.randrange(len(tied)) if len(tied) > 1 else 0
                tied[i], tied[-1] = tied[-1], tied[i]
                yield tied.pop()

    def complete(self, worker: int, task: Task) -> list[Event]:
        """Record that ``task`` finished on ``worker``; the worker is free again.

        A stopped model's running task is accepted (its partition counts as done); then the
        model is done.

        Returns:
            In order: :class:`PassDone` when the task completed a pass, then :class:`ModelDone`
            when the model has no more work.

        Raises:
            CerebroValueError: ``task`` is not the task running on ``worker``.
        """
        m = self._release(worker, task, "complete")
        m.last_worker = worker
        m.owed.discard(task.partition)
        events: list[Event] = []
        if not m.owed:
            events.append(PassDone(m.model_id, m.kind, m.epoch))
            if m.kind == "train" and self._validate:
                m.kind = "eval"
            else:
                m.epoch += 1
                m.kind = "train"
            m.owed = set(range(self._num_workers)) if m.epoch < m.num_epochs else set()
        if m.epoch >= m.num_epochs:
            events.append(self._finish(m, "finished"))
        elif m.status == "stopping":
            events.append(self._finish(m, "stopped"))
        return events

    def fail(self, worker: int, task: Task) -> list[Event]:
        """Record that ``task`` raised on ``worker`` (e.g. a NaN loss): the model fails.

        The worker is free again; the partition does not count as done.

        Returns:
            ``[ModelDone(..., status="failed")]``.

        Raises:
            CerebroValueError: ``task`` is not the task running on ``worker``.
        """
        m = self._release(worker, task, "fail")
        return [self._finish(m, "failed")]

    def requeue(self, worker: int) -> list[Event]:
        """The worker died or restarted: its running task goes back to its model, to run again.

        The partition stays owed by the model (so the task is handed out again, to this worker
        once it is back), the worker is free, and models cached on it lose that preference.

        Returns:
            ``[]`` if the worker ran nothing; else ``[TaskLost(worker, task, requeued)]``,
            followed by ``ModelDone(..., status="stopped")`` when the task's model was stopped.
        """
        self._check_worker(worker)
        for m in self._models.values():
            if m.last_worker == worker:
                m.last_worker = None
        task = self._running.get(worker)
        if task is None:
            return []
        m = self._release(worker, task, "requeue")
        if m.status == "stopping":
            logger.info("worker %d lost %s of stopped model %s", worker, task, m.model_id)
            return [TaskLost(worker, task, False), self._finish(m, "stopped")]
        logger.info("worker %d lost %s: requeued", worker, task)
        return [TaskLost(worker, task, True)]

    def requeue_all(self) -> list[Event]:
        """All workers restarted: requeue every running task (see :meth:`requeue`)."""
        events: list[Event] = []
        for w in range(self._num_workers):
            events.extend(self.requeue(w))
        return events

    # ------------------------------------------------------------------ internals
    def _get(self, model_id: str) -> _Model:
        try:
            return self._models[model_id]
        except (KeyError, TypeError):
            raise CerebroValueError(
                f"model_id must name a model added to the scheduler, got {model_id!r}"
            ) from None

    def _check_worker(self, worker: int) -> None:
        if isinstance(worker, bool) or not isinstance(worker, int):
            raise CerebroTypeError(f"worker must be an int, got {worker!r}")
        if not 0 <= worker < self._num_workers:
            raise CerebroValueError(f"worker must be in [0, {self._num_workers}), got {worker}")

    def _release(self, worker: int, task: Task, action: str) -> _Model:
        """Take ``task`` off ``worker`` (which must be running it) and free the worker."""
        self._check_worker(worker)
        running = self._running.get(worker)
        if running is None or running != task:
            raise CerebroValueError(
                f"cannot {action} {task!r} on worker {worker}: that worker is running {running!r}"
            )
        del self._running[worker]
        self._free[worker] = None
        m = self._models[task.model_id]
        m.running_on = None
        return m

    def _finish(self, m: _Model, status: ModelStatus) -> ModelDone:
        m.status = status
        if status == "finished":
            m.owed = set()
        logger.debug("model %s %s after %d epochs", m.model_id, status, m.epoch)
        return ModelDone(m.model_id, m.epoch, status)  # type: ignore[arg-type]


class _PreferenceMatcher:
    """Matches free workers to idle models: as many pairs as possible, preferences first.

    Workers are served in order; each takes its most preferred model among those that still
    leave a maximum matching of the free workers to the idle models possible. A maximum matching
    is kept up to date with augmenting paths (Kuhn's algorithm; Berge: a matching is maximum iff
    no augmenting path exists). A free worker with any candidate is never left idle: in a maximum
    matching that leaves it free, each of its candidates is matched, and taking one from its
    partner keeps the size.
    """

    def __init__(
        self,
        candidates: dict[int, list[_Model]],
        prefer: Callable[[int, list[_Model]], Iterator[_Model]],
    ) -> None:
        self.candidates = candidates  # worker -> models owing it, workers in service order
        self.prefer = prefer
        self.w2m: dict[int, _Model] = {}
        self.m2w: dict[str, int] = {}  # model id -> worker
        self.fixed: set[str] = set()  # models already assigned for good

    def run(self) -> list[tuple[int, _Model]]:
        order = list(self.candidates)
        for w in order:
            if self.candidates[w]:
                self._augment([w], set())
        pairs = []
        for i, w in enumerate(order):
            options = [m for m in self.candidates[w] if m.model_id not in self.fixed]
            if not options:
                continue
            later = order[i + 1 :]
            for m in self.prefer(w, options):
                if self._take(w, m, later):
                    break
            else:  # pragma: no cover - impossible: see the class docstring
                raise RuntimeError(f"no feasible model for worker {w}")
            pairs.append((w, m))
            self.fixed.add(m.model_id)
            del self.w2m[w], self.m2w[m.model_id]
        return pairs

    def _take(self, w: int, m: _Model, later: list[int]) -> bool:
        """Make the maximum matching contain (w, m) if one does; the others stay in ``later``."""
        old_m = self.w2m.get(w)
        old_w = self.m2w.get(m.model_id)
        if old_m is m:
            return True
        saved = dict(self.w2m), dict(self.m2w)
        if old_m is not None:
            del self.m2w[old_m.model_id]
        if old_w is not None:
            del self.w2m[old_w]
        self.w2m[w], self.m2w[m.model_id] = m, w
        if old_m is None or old_w is None:
            return True  # one pair swapped for another (or one more): still maximum
        # Two pairs gave way to one: still maximum only if an augmenting path now exists
        # among the later workers, with w and m (about to be fixed) left alone.
        if self._augment(later, self.fixed | {m.model_id}):
            return True
        self.w2m, self.m2w = saved
        return False

    def _augment(self, starts: list[int], seen: set[str]) -> bool:
        """Find an augmenting path from an unmatched worker in ``starts`` and apply it.

        ``seen`` holds models the search must not use; it is shared by all starts, which is
        sound because the matching does not change between failed searches.
        """
        for start in starts:
            if start in self.w2m or not self.candidates[start]:
                continue
            # Iterative DFS: a stack of (worker, its candidates) and the path of (worker, model).
            stack = [(start, iter(self.candidates[start]))]
            path: list[tuple[int, _Model]] = []
            while stack:
                w, it = stack[-1]
                for m in it:
                    if m.model_id in seen:
                        continue
                    seen.add(m.model_id)
                    path.append((w, m))
                    nxt = self.m2w.get(m.model_id)
                    if nxt is None:
                        for pw, pm in path:
                            self.w2m[pw], self.m2w[pm.model_id] = pm, pw
                        return True
                    stack.append((nxt, iter(self.candidates[nxt])))
                    break
                else:
                    stack.pop()
                    if path:
                        path.pop()
        return False
