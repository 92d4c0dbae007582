"""The driver's model bookkeeping (ModelHopper) with real trainers in one process, no Spark:
the checkpoint chain in the store, and resuming from any committed state."""

from __future__ import annotations

import sys
from pathlib import Path

import keras
import pytest

sys.path.insert(0, str(Path(__file__).parents[1] / "keras"))
from keras_helpers import mlp, regression_data, slice_rows  # noqa: E402

from cerebro.backend._base import ModelRequest  # noqa: E402
from cerebro.backend.hopper import ModelHopper  # noqa: E402
from cerebro.backend.scheduler import Scheduler  # noqa: E402
from cerebro.keras import KerasTrainer, SparkEstimator  # noqa: E402

W, EPOCHS = 2, 2


class Job:
    """Hands out the given requests once; records what the hopper tells it."""

    def __init__(self, requests):
        self.requests, self.ended = list(requests), {}

    def next_models(self, num_running):
        out, self.requests = self.requests, []
        return out

    def on_epoch_end(self, model_id, epoch, metrics):
        return True

    def on_model_end(self, model_id, status, error):
        self.ended[model_id] = status


def estimator():
    keras.utils.set_random_seed(3)
    return SparkEstimator(mlp(units=8), keras.optimizers.Adam(1e-2), "mse", batch_size=64)


@pytest.fixture(scope="module")
def trainers_data():
    train, val = regression_data(800, seed=1), regression_data(200, seed=2)
    return [
        (slice_rows(train, i * 400, (i + 1) * 400), slice_rows(val, i * 100, (i + 1) * 100))
        for i in range(W)
    ]


def drive(store, hopper, trainers, after_each=None, max_tasks=None):
    """Run the tasks the scheduler hands out, one after another, as a backend would."""
    results, pending = [], []
    hopper.admit()
    while not hopper.finished and (max_tasks is None or len(results) < max_tasks):
        pending += hopper.scheduler.assign()
        worker, task = pending.pop(0)
        kind, payload = hopper.message_for(task)
        for model_id in payload.pop("forget"):  # as a worker does
            trainers[worker].forget(model_id)
        run = trainers[worker].train if kind == "train" else trainers[worker].evaluate
        result = run(**payload)
        hopper.on_result(worker, task, result)
        results.append(result)
        if after_each is not None:
            after_each(task)
    return results


def test_hops_pass_state_files_and_each_epoch_ends_with_a_keras_archive(
    local_store, trainers_data
):
    trainers = [KerasTrainer(local_store, t, v, ["features"], ["label"]) for t, v in trainers_data]
    job = Job([ModelRequest("m", estimator(), {"units": 8}, EPOCHS)])
    hopper = ModelHopper(local_store, job, Scheduler(W, seed=1), seed=7, has_validation=True)
    run_path = local_store.get_run_path("m")
    seen = []

    def check(task):
        names = sorted(local_store.listdir(run_path))
        state = local_store.read_json(local_store.get_run_state_path("m"))
        if hopper.finished:
            return
        # Only the files the committed state names are left, and they exist.
        files = [n for n in names if n != "state.json"]
        named = {
            state["checkpoint"].rsplit("/", 1)[1],
            state["model_checkpoint"].rsplit("/", 1)[1],
        }
        assert set(files) == named, (task, names)
        seen.append((task.kind, task.epoch, len(state["sub_epochs"]), sorted(named)))

    drive(local_store, hopper, trainers, after_each=check)
    assert job.ended == {"m": "finished"}
    assert sorted(local_store.listdir(run_path)) == ["checkpoint.keras", "state.json"]
    final = local_store.read_json(local_store.get_run_state_path("m"))
    assert final["checkpoint"] == final["model_checkpoint"] == local_store.get_checkpoint_path("m")
    assert final["epochs_done"] == EPOCHS and final["hops"] == EPOCHS * W
    # Mid-epoch hops leave a state file next to the last archive; the epoch's last hop an
    # archive of its own.
    trains = [s for s in seen if s[0] == "train"]
    mid = [s for s in trains if s[2] % W == 1]
    ends = [s for s in trains if s[2] % W == 0]
    assert mid and all(any(n.endswith(".state") for n in s[3]) for s in mid)
    for s in ends:
        stems = {n.rsplit(".", 1)[0] for n in s[3]}
        assert len(stems) == 1, s  # the state file and the archive of the same hop


def test_resume_records_a_train_pass_whose_metrics_were_not_committed(local_store, trainers_data):
    """Killed between committing a pass's last hop and committing its metrics: the state holds
    every partition's result, so a resumed run records the pass before its eval pass."""
    trainers = [KerasTrainer(local_store, t, v, ["features"], ["label"]) for t, v in trainers_data]
    job = Job([ModelRequest("m", estimator(), {"units": 8}, EPOCHS)])
    hopper = ModelHopper(local_store, job, Scheduler(W, seed=1), seed=7, has_validation=True)
    first_pass = drive(local_store, hopper, trainers, max_tasks=W)
    state = local_store.read_json(local_store.get_run_state_path("m"))
    assert len(state["history"]["train_loss"]) == 1 and state["train_pass"] == []
    # What the state looked like one commit earlier: all hops in, the pass not recorded.
    trained = hopper.runs["m"].history["train_loss"][0]
    state["history"] = {}
    state["train_pass"] = [{"metrics": r["metrics"], "rows": r["rows"]} for r in first_pass]
    local_store.write_json(local_store.get_run_state_path("m"), state)

    job2 = Job([ModelRequest("m", estimator(), {"units": 8}, EPOCHS, resume_state=state)])
    hopper2 = ModelHopper(local_store, job2, Scheduler(W, seed=1), seed=7, has_validation=True)
    drive(local_store, hopper2, trainers)
    history = local_store.read_json(local_store.get_run_state_path("m"))["history"]
    assert len(history["train_loss"]) == len(history["val_loss"]) == EPOCHS
    assert history["train_loss"][0] == pytest.approx(trained)


def test_without_early_stopping_only_the_last_epoch_writes_an_archive_and_workers_forget(
    local_store, trainers_data
):
    trainers = [KerasTrainer(local_store, t, v, ["features"], ["label"]) for t, v in trainers_data]
    requests = [
        ModelRequest("short", estimator(), {}, 1, may_stop_early=False),
        ModelRequest("long", estimator(), {}, 3, may_stop_early=False),
    ]
    hopper = ModelHopper(
        local_store, Job(requests), Scheduler(W, seed=1), seed=7, has_validation=True
    )
    archives, forgotten = [], {w: [] for w in range(W)}
    original = hopper.message_for

    def recording(task):
        kind, payload = original(task)
        forgotten[task.partition] += payload["forget"]
        if kind == "train" and payload["keras_out"]:
            archives.append((task.model_id, task.epoch))
        return kind, payload

    hopper.message_for = recording
    drive(local_store, hopper, trainers)
    # Only the hop that ends each model's last epoch writes a .keras archive.
    assert sorted(archives) == [("long", 2), ("short", 0)]
    for model_id in ("short", "long"):
        run_path = local_store.get_run_path(model_id)
        assert sorted(local_store.listdir(run_path)) == ["checkpoint.keras", "state.json"]
    # Each worker hears once that "short" ended (in its next message), and drops it.
    assert forgotten == {w: ["short"] for w in range(W)}
    assert all("short" not in t.cached_models for t in trainers)
