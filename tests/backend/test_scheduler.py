"""Tests of the MOP scheduler: unit tests, and property-based tests driven by a simulator.

The simulator (:class:`Sim`) plays the driver with a fake clock: tasks take random durations,
models arrive while others train, and the driver stops models, reports failures and loses
workers at random. It keeps its own reference record of what each model has completed (a ledger
of (model, epoch, kind, partition)) and checks the scheduler against it after every step.
"""

from __future__ import annotations

import heapq
import random
import subprocess
import sys
from dataclasses import dataclass, field

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cerebro.backend.scheduler import (
    ModelDone,
    PassDone,
    Progress,
    Scheduler,
    Task,
    TaskLost,
)
from cerebro.exceptions import CerebroError, CerebroTypeError, CerebroValueError

MAX_STEPS = 20_000  # far above any run here: a scheduler that never ends fails, not hangs


def kinds(validate: bool) -> tuple[str, ...]:
    return ("train", "eval") if validate else ("train",)


def run_serial(sched: Scheduler) -> tuple[list[tuple[int, Task]], list[object]]:
    """Drive ``sched`` to the end, completing tasks in the order they were assigned.

    Tasks already running when it is called complete first (they are not in the trace).
    """
    trace, events = [], []
    for w, t in sorted(sched.running.items()):
        events.extend(sched.complete(w, t))
    queue: list[tuple[int, Task]] = []
    for _ in range(MAX_STEPS):
        queue.extend(sched.assign())
        if not queue:
            break
        w, t = queue.pop(0)
        trace.append((w, t))
        events.extend(sched.complete(w, t))
    else:
        raise AssertionError(f"no end after {MAX_STEPS} tasks: the scheduler loops")
    assert sched.is_done
    return trace, events


# ---------------------------------------------------------------------------------- unit tests
def test_single_model_single_worker_runs_every_pass_in_order():
    s = Scheduler(1, seed=3)
    s.add_model("m", 2)
    trace, events = run_serial(s)
    assert [t for _, t in trace] == [
        Task("m", "train", 0, 0),
        Task("m", "eval", 0, 0),
        Task("m", "train", 1, 0),
        Task("m", "eval", 1, 0),
    ]
    assert events == [
        PassDone("m", "train", 0),
        PassDone("m", "eval", 0),
        PassDone("m", "train", 1),
        PassDone("m", "eval", 1),
        ModelDone("m", 2, "finished"),
    ]
    assert s.progress("m") == Progress(2, "train", frozenset())
    assert s.model_status("m") == "finished"
    assert s.active_models == []


def test_one_model_visits_every_partition_once_per_pass():
    s = Scheduler(3, seed=1)
    s.add_model("m", 3)
    seen: dict[tuple[int, str], list[int]] = {}
    for _ in range(3 * 2 * 3):
        assigned = s.assign()
        assert len(assigned) == 1, "one model can only be on one worker"
        w, t = assigned[0]
        assert t.partition == w
        seen.setdefault((t.epoch, t.kind), []).append(w)
        s.complete(w, t)
    assert s.is_done
    assert list(seen) == [(e, k) for e in range(3) for k in ("train", "eval")]
    for parts in seen.values():
        assert sorted(parts) == [0, 1, 2]


def test_a_model_is_never_on_two_workers():
    s = Scheduler(4, seed=0)
    s.add_model("a", 1)
    s.add_model("b", 1)
    first = s.assign()
    assert len(first) == 2
    assert {t.model_id for _, t in first} == {"a", "b"}
    assert sorted(s.free_workers) == sorted({0, 1, 2, 3} - {w for w, _ in first})
    assert s.assign() == []  # both models run: the other two workers stay free


def test_an_idle_model_takes_a_freed_worker_at_once():
    s = Scheduler(2, seed=0)
    s.add_model("a", 1)
    ((w, t),) = s.assign()
    assert s.complete(w, t) == []
    ((w2, t2),) = s.assign()
    assert w2 == 1 - w and t2 == Task("a", "train", 0, 1 - w)


def test_prefers_the_model_with_most_partitions_left_in_its_pass():
    s = Scheduler(3, seed=0)
    s.add_model("a", 1)
    s.add_model("b", 1)
    s.add_model("c", 1)
    assigned = dict(s.assign())
    # Let the model on worker 0 finish: it then owes 2 partitions, the others (running) owe 3.
    t0 = assigned[0]
    s.complete(0, t0)
    s.add_model("fresh", 1)  # owes 3 partitions: preferred over t0's model for worker 0
    assert s.assign() == [(0, Task("fresh", "train", 0, 0))]


def test_prefers_the_model_with_most_work_left_across_passes():
    # "late" is in its last epoch's eval pass owing all 3 partitions (3 tasks left); "early" owes
    # 1 partition of its first train pass but has 3 more passes (10 tasks left): it goes first.
    for seed in range(10):
        s = Scheduler(3, seed=seed)
        s.add_model("late", 2, start_epoch=1, phase="eval")
        s.add_model("early", 2, done_partitions=[1, 2])
        assert [t.model_id for _, t in s.assign()] == ["early", "late"]


def train_pass_then_eval(seed: int, lose_worker: int | None = None) -> tuple[dict, dict]:
    """Two models, two workers: run the first train pass; return each model's last worker and
    who gets which worker for the eval pass (both models owe both partitions: a tie)."""
    s = Scheduler(2, seed=seed)
    s.add_model("a", 2)
    s.add_model("b", 2)
    last = {}
    for _ in range(2):
        for w, t in s.assign():
            s.complete(w, t)
            last[t.model_id] = w
    if lose_worker is not None:
        assert s.requeue(lose_worker) == []  # the worker restarts while idle: its cache is gone
    eval_round = dict(s.assign())
    assert all(t.kind == "eval" for t in eval_round.values())
    return last, {w: t.model_id for w, t in eval_round.items()}


def test_prefers_the_model_cached_on_the_worker():
    for seed in range(20):
        last, eval_round = train_pass_then_eval(seed)
        assert last["a"] != last["b"]
        assert eval_round == {w: m for m, w in last.items()}  # each model back where it was


def test_requeue_forgets_the_cache_on_the_dead_worker():
    # Without its cache preference, worker 0 sometimes takes the model it did not run before
    # (a random tie-break); with it, it always took back its own (previous test).
    back_home = set()
    for seed in range(20):
        last, eval_round = train_pass_then_eval(seed, lose_worker=0)
        back_home.add(last[eval_round[0]] == 0)
    assert back_home == {True, False}


def test_a_free_worker_does_not_take_the_only_model_another_free_worker_can_run():
    # Worker 0 (free first) prefers "a" (owes both partitions) over "b" (owes only 0), but "a"
    # is the only model worker 1 can run: the matching gives 0 <- b and 1 <- a.
    s = Scheduler(2, seed=0)
    s.add_model("b", 1, done_partitions=[1])
    s.add_model("a", 1)
    assert s.assign() == [(0, Task("b", "train", 0, 0)), (1, Task("a", "train", 0, 1))]


def test_stop_model_when_idle_finishes_it_at_once():
    s = Scheduler(2, seed=0)
    s.add_model("a", 3)
    s.add_model("b", 3)
    assert s.stop_model("a") == [ModelDone("a", 0, "stopped")]
    assert s.stop_model("a") == []  # idempotent
    assert s.model_status("a") == "stopped"
    trace, events = run_serial(s)
    assert {t.model_id for _, t in trace} == {"b"}
    assert ModelDone("b", 3, "finished") in events


def test_stop_model_while_running_accepts_the_running_task():
    s = Scheduler(1, seed=0)
    s.add_model("a", 3)
    ((w, t),) = s.assign()
    assert s.stop_model("a") == []  # the task still runs
    assert s.model_status("a") == "stopping"
    assert not s.is_done
    assert s.stop_model("a") == []
    # Its completion is accepted and counts; the model is then done and gets no more tasks.
    assert s.complete(w, t) == [PassDone("a", "train", 0), ModelDone("a", 0, "stopped")]
    assert s.progress("a") == Progress(0, "eval", frozenset())
    assert s.assign() == []
    assert s.is_done


def test_stop_after_the_last_pass_is_a_noop():
    s = Scheduler(1, seed=0, validate=False)
    s.add_model("a", 1)
    ((w, t),) = s.assign()
    assert s.complete(w, t) == [PassDone("a", "train", 0), ModelDone("a", 1, "finished")]
    assert s.stop_model("a") == []
    assert s.model_status("a") == "finished"


def test_fail_frees_the_worker_and_does_not_count_the_partition():
    s = Scheduler(2, seed=0)
    s.add_model("a", 2)
    s.add_model("b", 1)
    assigned = dict(s.assign())
    wa = next(w for w, t in assigned.items() if t.model_id == "a")
    assert s.fail(wa, assigned[wa]) == [ModelDone("a", 0, "failed")]
    assert s.progress("a") == Progress(0, "train", frozenset())
    assert wa in s.free_workers
    assert s.model_status("a") == "failed"
    with pytest.raises(CerebroValueError, match="cannot complete"):
        s.complete(wa, assigned[wa])
    trace, _ = run_serial(s)
    assert {t.model_id for _, t in trace} == {"b"}


def test_add_model_while_others_run():
    s = Scheduler(3, seed=0)
    s.add_model("a", 2)
    ((w, t),) = s.assign()
    s.add_model("b", 1)
    s.add_model("c", 1)
    later = s.assign()
    assert sorted(t.model_id for _, t in later) == ["b", "c"]
    assert {w2 for w2, _ in later} == {0, 1, 2} - {w}
    trace, events = run_serial(s)
    done = [e for e in events if isinstance(e, ModelDone)]
    assert sorted(done, key=lambda e: e.model_id) == [
        ModelDone("a", 2, "finished"),
        ModelDone("b", 1, "finished"),
        ModelDone("c", 1, "finished"),
    ]
    assert len(trace) + 3 == (2 + 1 + 1) * 2 * 3


def test_add_model_after_everything_finished():
    s = Scheduler(2, seed=0)
    assert s.is_done  # nothing to do yet
    s.add_model("a", 1)
    assert not s.is_done
    run_serial(s)
    s.add_model("b", 1)
    assert not s.is_done
    trace, _ = run_serial(s)
    assert len(trace) == 4 and {t.model_id for _, t in trace} == {"b"}


def test_requeue_gives_the_task_back_and_frees_the_worker():
    s = Scheduler(2, seed=0)
    s.add_model("a", 1)
    ((w, t),) = s.assign()
    assert s.requeue(w) == [TaskLost(w, t, True)]
    assert s.running == {}
    assert sorted(s.free_workers) == [0, 1]
    assert s.progress("a") == Progress(0, "train", frozenset())
    assert s.requeue(w) == []  # nothing runs there any more
    # The partition is still owed: the same task runs again, once, and the model finishes.
    trace, events = run_serial(s)
    assert [t2 for _, t2 in trace].count(t) == 1
    assert sorted((t2.kind, t2.partition) for _, t2 in trace) == [
        ("eval", 0),
        ("eval", 1),
        ("train", 0),
        ("train", 1),
    ]
    assert events[-1] == ModelDone("a", 1, "finished")


def test_requeue_of_a_stopped_models_task_finishes_the_model():
    s = Scheduler(1, seed=0)
    s.add_model("a", 2)
    ((w, t),) = s.assign()
    s.stop_model("a")
    assert s.requeue(w) == [TaskLost(w, t, False), ModelDone("a", 0, "stopped")]
    assert s.is_done and s.assign() == []


def test_requeue_all_requeues_every_running_task_and_the_run_completes():
    s = Scheduler(3, seed=5)
    for m in "abc":
        s.add_model(m, 2)
    assigned = dict(s.assign())
    assert len(assigned) == 3
    events = s.requeue_all()
    assert events == [TaskLost(w, assigned[w], True) for w in sorted(assigned)]
    assert s.running == {} and sorted(s.free_workers) == [0, 1, 2]
    trace, events = run_serial(s)
    done = {(t.model_id, t.epoch, t.kind, t.partition) for _, t in trace}
    assert len(done) == len(trace) == 3 * 2 * 2 * 3  # each task exactly once after the requeue


def test_validate_false_runs_train_passes_only():
    s = Scheduler(2, seed=0, validate=False)
    s.add_model("a", 3)
    trace, events = run_serial(s)
    assert all(t.kind == "train" for _, t in trace)
    assert len(trace) == 6
    assert events == [PassDone("a", "train", e) for e in range(3)] + [ModelDone("a", 3)]


def test_resume_from_mid_epoch():
    s = Scheduler(3, seed=0)
    s.add_model("a", 3, start_epoch=1, phase="eval", done_partitions=[0])
    assert s.progress("a") == Progress(1, "eval", frozenset({0}))
    trace, events = run_serial(s)
    assert [(t.epoch, t.kind) for _, t in trace[:2]] == [(1, "eval"), (1, "eval")]
    assert sorted(t.partition for _, t in trace[:2]) == [1, 2]
    assert len(trace) == 2 + 6  # the rest of epoch 1's eval pass, then epoch 2
    assert events[0] == PassDone("a", "eval", 1)
    assert events[-1] == ModelDone("a", 3, "finished")


def test_progress_resumes_a_model_in_a_new_scheduler():
    s = Scheduler(3, seed=2)
    s.add_model("a", 2)
    ledger = []
    for _ in range(4):  # train pass (3 tasks) and the first eval task
        ((w, t),) = s.assign()
        ledger.append(t)
        s.complete(w, t)
    p = s.progress("a")
    assert p.epoch == 0 and p.kind == "eval" and len(p.done) == 1
    s2 = Scheduler(3, seed=2)
    s2.add_model("a", 2, start_epoch=p.epoch, phase=p.kind, done_partitions=p.done)
    trace, _ = run_serial(s2)
    ledger += [t for _, t in trace]
    assert sorted((t.epoch, t.kind, t.partition) for t in ledger) == sorted(
        (e, k, q) for e in range(2) for k in ("train", "eval") for q in range(3)
    )


def test_same_seed_same_schedule_and_different_seeds_differ():
    def schedule(seed: int) -> list[tuple[float, int, Task]]:
        sim = Sim(num_workers=3, seed=seed, validate=True, sim_seed=11)
        for i in range(6):
            sim.arrive(f"m{i}", 2, at=0.0)
        sim.run()
        return sim.trace

    a = schedule(7)
    assert a == schedule(7)
    others = [schedule(s) for s in (8, 9, 10)]
    assert all(o != a for o in others)
    # Different orders, not only different times: the sequence of (worker, task) differs.
    assert len({tuple((w, t) for _, w, t in o) for o in [a, *others]}) == 4


def test_importing_the_scheduler_imports_no_spark_or_tensorflow():
    code = (
        "import sys, cerebro.backend.scheduler\n"
        "bad = [m for m in ('pyspark', 'tensorflow', 'keras', 'pyarrow') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


# ---------------------------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    ("kwargs", "exc", "message"),
    [
        ({"num_workers": 0}, CerebroValueError, "num_workers must be >= 1, got 0"),
        ({"num_workers": -2}, CerebroValueError, "num_workers must be >= 1, got -2"),
        ({"num_workers": 2.0}, CerebroTypeError, "num_workers must be an int >= 1, got 2.0"),
        ({"num_workers": True}, CerebroTypeError, "num_workers must be an int >= 1, got True"),
        ({"num_workers": 2, "seed": "x"}, CerebroTypeError, "seed must be an int, got 'x'"),
        ({"num_workers": 2, "validate": 1}, CerebroTypeError, "validate must be a bool, got 1"),
    ],
)
def test_constructor_rejects_bad_arguments(kwargs, exc, message):
    with pytest.raises(exc, match=message):
        Scheduler(**kwargs)


@pytest.mark.parametrize(
    ("args", "kwargs", "message"),
    [
        (("", 1), {}, "model_id must be a non-empty str, got ''"),
        ((3, 1), {}, "model_id must be a non-empty str, got 3"),
        (("dup", 1), {}, "model_id must be unique, but 'dup' was already added"),
        (("m", 0), {}, "num_epochs must be >= 1, got 0"),
        (("m", 2), {"start_epoch": -1}, "start_epoch must be >= 0, got -1"),
        (("m", 2), {"start_epoch": 2}, r"start_epoch must be < num_epochs=2 .*got 2"),
        (("m", 2), {"phase": "test"}, "phase must be 'train' or 'eval', got 'test'"),
        (("m", 2), {"done_partitions": [3]}, r"done_partitions must hold partitions in \[0, 3\)"),
        (("m", 2), {"done_partitions": [-1]}, r"partitions in \[0, 3\), got -1"),
        (("m", 2), {"done_partitions": [0, 1, 2]}, "must not cover all 3 partitions"),
    ],
)
def test_add_model_rejects_bad_arguments(args, kwargs, message):
    s = Scheduler(3)
    s.add_model("dup", 1)
    with pytest.raises(CerebroValueError, match=message):
        s.add_model(*args, **kwargs)
    assert s.model_ids == ["dup"]  # nothing was added


def test_add_model_num_epochs_type_and_eval_phase_without_validation():
    s = Scheduler(2, validate=False)
    with pytest.raises(CerebroTypeError, match="num_epochs must be an int >= 1, got '2'"):
        s.add_model("m", "2")
    with pytest.raises(CerebroValueError, match="phase must be 'train' .*validate=False"):
        s.add_model("m", 2, phase="eval")


def test_unknown_models_workers_and_tasks_are_rejected():
    s = Scheduler(2, seed=0)
    s.add_model("a", 1)
    ((w, t),) = s.assign()
    with pytest.raises(CerebroValueError, match="model_id must name a model .* got 'zz'"):
        s.stop_model("zz")
    with pytest.raises(CerebroValueError, match="got 'zz'"):
        s.progress("zz")
    with pytest.raises(CerebroValueError, match=r"worker must be in \[0, 2\), got 5"):
        s.complete(5, t)
    with pytest.raises(CerebroTypeError, match="worker must be an int, got '0'"):
        s.requeue("0")
    with pytest.raises(CerebroValueError, match=r"cannot complete .* on worker \d: that worker"):
        s.complete(1 - w, t)
    wrong = Task("a", "eval", 0, w)
    with pytest.raises(CerebroValueError, match="cannot fail"):
        s.fail(w, wrong)
    assert s.running == {w: t}  # the bad calls changed nothing
    assert s.complete(w, t) == []
    with pytest.raises(CerebroError, match="cannot complete"):
        s.complete(w, t)  # twice


# ---------------------------------------------------------------------------------- simulator
@dataclass
class RefModel:
    """The simulator's own record of a model, independent of the scheduler's internals."""

    num_epochs: int
    epoch: int
    kind_idx: int
    done: set[int] = field(default_factory=set)
    start: tuple[int, int, frozenset[int]] = (0, 0, frozenset())
    running: Task | None = None
    stop_requested: bool = False
    final: ModelDone | None = None


class Sim:
    """A discrete-event driver with a fake clock; checks the scheduler after every step.

    Args:
        num_workers, seed, validate: the scheduler's arguments.
        sim_seed: seed of durations and random driver actions.
        p_stop: chance that the driver stops a model when it hears its epoch end.
        p_stop_running: chance per step that the driver stops a random running model.
        p_fail: chance that a task is reported as failed.
        p_requeue: chance per step that a random busy worker dies.
        p_requeue_all: chance per step that all workers restart.
        equal_durations: every task takes 1.0 (for makespan checks).
        batch_window: None to call assign() after every event; else handle all events within
            this much time of the first one before calling assign() (several free workers).
    """

    def __init__(
        self,
        *,
        num_workers: int,
        seed: int,
        validate: bool,
        sim_seed: int,
        p_stop: float = 0.0,
        p_stop_running: float = 0.0,
        p_fail: float = 0.0,
        p_requeue: float = 0.0,
        p_requeue_all: float = 0.0,
        equal_durations: bool = False,
        batch_window: float | None = None,
    ) -> None:
        self.W = num_workers
        self.validate = validate
        self.kinds = kinds(validate)
        self.sched = Scheduler(num_workers, seed=seed, validate=validate)
        self.rng = random.Random(sim_seed)
        self.p_stop, self.p_stop_running, self.p_fail = p_stop, p_stop_running, p_fail
        self.p_requeue, self.p_requeue_all = p_requeue, p_requeue_all
        self.equal = equal_durations
        self.batch_window = batch_window
        self.clock = 0.0
        self.heap: list[tuple[float, int, str, object]] = []
        self.seq = 0
        self.token: dict[int, int] = {}  # worker -> id of its live completion event
        self.ref: dict[str, RefModel] = {}
        self.speed: dict[str, float] = {}
        self.ledger: set[tuple[str, int, str, int]] = set()
        self.trace: list[tuple[float, int, Task]] = []
        self.steps = 0

    # ----------------------------------------------------------------- driving
    def _push(self, at: float, kind: str, payload: object) -> None:
        self.seq += 1
        heapq.heappush(self.heap, (at, self.seq, kind, payload))

    def arrive(
        self,
        model_id: str,
        num_epochs: int,
        *,
        at: float,
        start_epoch: int = 0,
        phase: str = "train",
        done: tuple[int, ...] = (),
    ) -> None:
        self._push(at, "arrive", (model_id, num_epochs, start_epoch, phase, done))

    def run(self) -> None:
        self._assign()
        while self.heap:
            assert self.steps < MAX_STEPS, "no end: the scheduler keeps handing out tasks"
            # Handle one event, or (batch_window) every event up to batch_window later, as a
            # driver does that reads several results before it calls assign() again.
            first = self.heap[0][0]
            while self.heap and (
                self.heap[0][0] == first
                if self.batch_window is None
                else self.heap[0][0] <= first + self.batch_window
            ):
                at, _, kind, payload = heapq.heappop(self.heap)
                assert at >= self.clock
                self.clock = at
                self._handle(kind, payload)
                if self.batch_window is None:
                    break
            self._chaos()
            self._assign()
        self._check_end()

    def _handle(self, kind: str, payload: object) -> None:
        if kind == "arrive":
            model_id, n, start, phase, done = payload
            self.sched.add_model(model_id, n, start_epoch=start, phase=phase, done_partitions=done)
            k = self.kinds.index(phase)
            self.ref[model_id] = RefModel(n, start, k, set(done), (start, k, frozenset(done)))
            self.speed[model_id] = 1.0 if self.equal else self.rng.uniform(0.3, 3.0)
        elif kind == "finish":
            w, task, token = payload
            if self.token.get(w) != token:
                return  # the worker died before this task finished
            del self.token[w]
            self._finish(w, task)

    def _finish(self, w: int, task: Task) -> None:
        r = self.ref[task.model_id]
        assert r.running == task
        r.running = None
        if self.p_fail and self.rng.random() < self.p_fail:
            events = self.sched.fail(w, task)
            assert events == [ModelDone(task.model_id, r.epoch, "failed")]
            r.final = events[0]
            return
        key = (task.model_id, task.epoch, task.kind, task.partition)
        assert key not in self.ledger, f"{key} ran twice"
        self.ledger.add(key)
        r.done.add(task.partition)
        expected: list[object] = []
        if len(r.done) == self.W:
            expected.append(PassDone(task.model_id, task.kind, task.epoch))
            r.done = set()
            r.kind_idx += 1
            if r.kind_idx == len(self.kinds):
                r.kind_idx, r.epoch = 0, r.epoch + 1
        if r.epoch == r.num_epochs:
            expected.append(ModelDone(task.model_id, r.epoch, "finished"))
        elif r.stop_requested:
            expected.append(ModelDone(task.model_id, r.epoch, "stopped"))
        events = self.sched.complete(w, task)
        assert events == expected
        if expected and isinstance(expected[-1], ModelDone):
            r.final = expected[-1]
        # The driver hears "epoch done" and may stop the model (early stopping).
        epoch_end = [e for e in events if isinstance(e, PassDone) and e.kind == self.kinds[-1]]
        if epoch_end and r.final is None and self.rng.random() < self.p_stop:
            self._stop(task.model_id)

    def _stop(self, model_id: str) -> None:
        r = self.ref[model_id]
        events = self.sched.stop_model(model_id)
        if r.final is not None or r.stop_requested:
            assert events == []
            return
        r.stop_requested = True
        if r.running is None:
            assert events == [ModelDone(model_id, r.epoch, "stopped")]
            r.final = events[0]
        else:
            assert events == []
            assert self.sched.model_status(model_id) == "stopping"

    def _chaos(self) -> None:
        running = self.sched.running
        if running and self.p_stop_running and self.rng.random() < self.p_stop_running:
            self._stop(running[self.rng.choice(sorted(running))].model_id)
        if running and self.p_requeue and self.rng.random() < self.p_requeue:
            self._lose([self.rng.choice(sorted(running))])
        if self.p_requeue_all and self.rng.random() < self.p_requeue_all:
            self._lose(list(range(self.W)), everything=True)

    def _lose(self, workers: list[int], everything: bool = False) -> None:
        running = self.sched.running
        expected: list[object] = []
        for w in workers:
            if w not in running:
                continue
            task = running[w]
            r = self.ref[task.model_id]
            r.running = None
            del self.token[w]
            if r.stop_requested:
                r.final = ModelDone(task.model_id, r.epoch, "stopped")
                expected += [TaskLost(w, task, False), r.final]
            else:
                expected.append(TaskLost(w, task, True))
        if everything:
            events = self.sched.requeue_all()
        else:
            events = self.sched.requeue(workers[0])
        assert events == expected
        assert not set(workers) & set(self.sched.running)

    def _assign(self) -> None:
        before_free = set(self.sched.free_workers)
        for w, task in self.sched.assign():
            assert w in before_free, f"worker {w} got a task while busy"
            assert task.partition == w
            r = self.ref[task.model_id]
            assert r.final is None and not r.stop_requested, f"{task} of a finished model"
            assert r.running is None, f"{task.model_id} is already running"
            assert (task.epoch, task.kind) == (r.epoch, self.kinds[r.kind_idx]), (task, r)
            assert task.partition not in r.done, f"{task} already done in this pass"
            r.running = task
            duration = 1.0 if self.equal else self.speed[task.model_id] * self.rng.uniform(0.5, 2)
            if task.kind == "eval" and not self.equal:
                duration *= 0.3
            self.token[w] = self.seq + 1
            self._push(self.clock + duration, "finish", (w, task, self.seq + 1))
            self.trace.append((self.clock, w, task))
        self._check_step()

    # ----------------------------------------------------------------- checks
    def _check_step(self) -> None:
        self.steps += 1
        s = self.sched
        running = s.running
        free = s.free_workers
        assert sorted(free + list(running)) == list(range(self.W)), "workers lost or doubled"
        models_running = [t.model_id for t in running.values()]
        assert len(models_running) == len(set(models_running)), "a model on two workers"
        for w, t in running.items():
            assert t.partition == w and self.ref[t.model_id].running == t
        assert sum(r.running is not None for r in self.ref.values()) == len(running)
        # Work conservation: a free worker means no idle, unstopped model owes its partition.
        for w in free:
            for model_id, r in self.ref.items():
                if r.final is None and not r.stop_requested and r.running is None:
                    assert w in r.done, f"worker {w} idle while {model_id} owes it ({r})"
        for model_id, r in self.ref.items():
            p = s.progress(model_id)
            if r.final is None or r.final.status != "finished":
                assert p == Progress(r.epoch, self.kinds[r.kind_idx], frozenset(r.done))
        assert set(s.active_models) == {m for m, r in self.ref.items() if r.final is None}

    def _check_end(self) -> None:
        s = self.sched
        assert s.is_done and s.running == {} and sorted(s.free_workers) == list(range(self.W))
        for model_id, r in self.ref.items():
            assert r.final is not None, f"{model_id} never got ModelDone"
            assert s.model_status(model_id) == r.final.status
            if r.final.status == "finished":
                assert r.final.epochs_completed == r.num_epochs
        # Exactly once per (model, epoch, kind, partition) is checked as tasks complete; a
        # finished model also completed every task from where it started to its last epoch.
        for model_id, r in self.ref.items():
            if r.final.status != "finished":
                continue
            e0, k0, done0 = r.start
            full = {
                (model_id, e, k, q)
                for e in range(e0, r.num_epochs)
                for ki, k in enumerate(self.kinds)
                for q in range(self.W)
                if (e, ki) > (e0, k0) or ((e, ki) == (e0, k0) and q not in done0)
            }
            assert {key for key in self.ledger if key[0] == model_id} == full

    @property
    def makespan(self) -> float:
        """Time of the last completion."""
        return self.clock


# ---------------------------------------------------------------------------------- properties
@st.composite
def scenarios(draw):
    return {
        "num_workers": draw(st.integers(1, 8)),
        "num_models": draw(st.integers(1, 20)),
        "epochs": draw(st.lists(st.integers(1, 4), min_size=20, max_size=20)),
        "validate": draw(st.booleans()),
        "seed": draw(st.integers(0, 2**32)),
        "sim_seed": draw(st.integers(0, 2**32)),
        "arrival_spread": draw(st.sampled_from([0.0, 5.0, 30.0])),
        "p_stop": draw(st.sampled_from([0.0, 0.2, 0.6])),
        "p_stop_running": draw(st.sampled_from([0.0, 0.02])),
        "p_fail": draw(st.sampled_from([0.0, 0.01])),
        "p_requeue": draw(st.sampled_from([0.0, 0.02])),
        "p_requeue_all": draw(st.sampled_from([0.0, 0.005])),
        "resume": draw(st.booleans()),
        "batch_window": draw(st.sampled_from([None, 0.0, 1.0])),
    }


def simulate(sc: dict) -> Sim:
    sim = Sim(
        num_workers=sc["num_workers"],
        seed=sc["seed"],
        validate=sc["validate"],
        sim_seed=sc["sim_seed"],
        p_stop=sc["p_stop"],
        p_stop_running=sc["p_stop_running"],
        p_fail=sc["p_fail"],
        p_requeue=sc["p_requeue"],
        p_requeue_all=sc["p_requeue_all"],
        batch_window=sc["batch_window"],
    )
    arng = random.Random(sc["sim_seed"] + 1)
    for i in range(sc["num_models"]):
        n = sc["epochs"][i]
        at = 0.0 if i == 0 else arng.uniform(0, sc["arrival_spread"])
        if sc["resume"] and arng.random() < 0.3:
            start = arng.randrange(n)
            phase = arng.choice(kinds(sc["validate"]))
            done = tuple(q for q in range(sc["num_workers"]) if arng.random() < 0.4)
            if len(done) == sc["num_workers"]:
                done = done[1:]
            sim.arrive(f"m{i}", n, at=at, start_epoch=start, phase=phase, done=done)
        else:
            sim.arrive(f"m{i}", n, at=at)
    sim.run()
    return sim


@settings(
    max_examples=300,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(scenarios())
def test_property_invariants_hold_under_random_runs(sc):
    # Sim checks every invariant after every step and the end state (see Sim._check_*).
    sim = simulate(sc)
    assert sim.steps > 0 and len(sim.ref) == sc["num_models"]


def test_seeded_sweep_without_chaos_finishes_every_model_exactly_once():
    """A plain seeded sweep: no stops, failures or lost workers, so every model must finish."""
    rng = random.Random(2024)
    for _ in range(60):
        sc = {
            "num_workers": rng.randint(1, 8),
            "num_models": rng.randint(1, 20),
            "epochs": [rng.randint(1, 4) for _ in range(20)],
            "validate": rng.random() < 0.7,
            "seed": rng.randrange(2**32),
            "sim_seed": rng.randrange(2**32),
            "arrival_spread": rng.choice([0.0, 10.0]),
            "p_stop": 0.0,
            "p_stop_running": 0.0,
            "p_fail": 0.0,
            "p_requeue": 0.0,
            "p_requeue_all": 0.0,
            "resume": False,
            "batch_window": rng.choice([None, 0.5]),
        }
        sim = simulate(sc)
        passes = len(kinds(sc["validate"]))
        total = sum(sc["epochs"][: sc["num_models"]]) * passes * sc["num_workers"]
        assert len(sim.ledger) == len(sim.trace) == total
        assert all(r.final.status == "finished" for r in sim.ref.values())


def max_matching(workers: list[int], owes: dict[str, set[int]]) -> int:
    """Brute-force size of a maximum matching of ``workers`` to models owing them."""
    if not workers:
        return 0
    w, rest = workers[0], workers[1:]
    best = max_matching(rest, owes)  # w stays free
    for m, parts in owes.items():
        if w in parts:
            others = {k: v for k, v in owes.items() if k != m}
            best = max(best, 1 + max_matching(rest, others))
    return best


@st.composite
def idle_models(draw):
    num_workers = draw(st.integers(1, 5))
    models = {}
    for i in range(draw(st.integers(1, 6))):
        epochs = draw(st.integers(1, 2))
        done = draw(st.sets(st.integers(0, num_workers - 1), max_size=num_workers - 1))
        models[f"m{i}"] = (
            epochs,
            draw(st.integers(0, epochs - 1)),
            draw(st.sampled_from(["train", "eval"])),
            done,
        )
    return num_workers, models, draw(st.integers(0, 1000))


@settings(max_examples=300, deadline=None, derandomize=True, database=None)
@given(idle_models())
def test_property_assign_is_a_maximum_matching_that_follows_the_preferences(case):
    """Several free workers at once: as many get work as possible, and each worker, in order,
    gets its most preferred model among those that still allow a maximum matching."""
    num_workers, models, seed = case
    s = Scheduler(num_workers, seed=seed)
    for model_id, (epochs, start, phase, done) in models.items():
        s.add_model(model_id, epochs, start_epoch=start, phase=phase, done_partitions=done)
    owes = {m: set(range(num_workers)) - done for m, (_, _, _, done) in models.items()}
    left = {
        m: ((epochs - start) * 2 - (1 if phase == "train" else 2)) * num_workers + len(owes[m])
        for m, (epochs, start, phase, _) in models.items()
    }
    got = dict(s.assign())
    workers = list(range(num_workers))  # a fresh scheduler serves workers 0, 1, ... in order
    assert len(got) == max_matching(workers, owes)
    remaining = dict(owes)
    for i, w in enumerate(workers):
        later = workers[i + 1 :]
        best = max_matching(workers[i:], remaining)
        feasible = [
            m
            for m in remaining
            if w in remaining[m]
            and 1 + max_matching(later, {k: v for k, v in remaining.items() if k != m}) == best
        ]
        if w not in got:
            assert not feasible
            continue
        chosen = got[w].model_id
        assert chosen in feasible
        assert left[chosen] == max(left[m] for m in feasible)
        del remaining[chosen]


# ---------------------------------------------------------------------------------- makespan
def makespan_ratio(
    num_models: int, num_workers: int, epochs: int, seed: int, batch_window: float | None
) -> float:
    """Simulated makespan over the ideal (total work / W) with unit task durations."""
    sim = Sim(
        num_workers=num_workers,
        seed=seed,
        validate=True,
        sim_seed=seed,
        equal_durations=True,
        batch_window=batch_window,
    )
    for i in range(num_models):
        sim.arrive(f"m{i}", epochs, at=0.0)
    sim.run()
    ideal = num_models * epochs * 2 * num_workers / num_workers
    return sim.makespan / ideal


@pytest.mark.parametrize("batch_window", [None, 0.0], ids=["one-at-a-time", "batched"])
@pytest.mark.parametrize(
    ("num_models", "num_workers"), [(8, 2), (2, 2), (5, 4), (16, 4), (9, 8), (12, 8), (20, 8)]
)
def test_makespan_is_close_to_ideal_with_equal_durations(num_models, num_workers, batch_window):
    """models >= workers, unit durations: within 5% of total work / W (8 x 2: exactly ideal).

    ``batched``: simultaneous completions reach the scheduler together (several free workers per
    assign(), as the Spark driver reads them); ``one-at-a-time``: assign() after each one.
    """
    ratios = [makespan_ratio(num_models, num_workers, 3, s, batch_window) for s in range(5)]
    assert max(ratios) <= 1.05, ratios
    if (num_models, num_workers) == (8, 2):
        assert ratios == [1.0] * 5
