"""End-to-end MOP training on real Spark with real Keras models."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest
from e2e_script import committed_hops

from cerebro.backend import SparkBackend
from cerebro.exceptions import CerebroValueError, ClusterCapacityError
from cerebro.tune import GridSearch, hp_choice

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from e2e_script import estimator_gen_fn, make_df  # noqa: E402

W, E = 2, 2


def _search(backend, store, **kw):
    args = dict(
        num_epochs=E,
        evaluation_metric="accuracy",
        feature_columns=["features"],
        label_columns=["label"],
        seed=3,
        verbose=0,
        experiment_name="t",
    )
    args.update(kw)
    space = args.pop("space", {"units": hp_choice([4, 16]), "lr": hp_choice([1e-2, 3e-2])})
    return GridSearch(backend, store, estimator_gen_fn, space, **args)


@pytest.fixture(scope="module")
def fitted(spark, tmp_path_factory):
    from cerebro.storage import LocalStore

    store = LocalStore(str(tmp_path_factory.mktemp("e2e") / "store"))
    backend = SparkBackend(spark.sparkContext, num_workers=W, verbose=0)
    search = _search(backend, store)
    t0 = time.monotonic()
    result = search.fit(make_df(spark, 3000))
    return store, result, spark, time.monotonic() - t0


@pytest.mark.slow
def test_every_model_trains_every_partition_once_per_epoch(fitted):
    store, result, _, _ = fitted
    assert len(result.models) == 4
    for model_id in result.models:
        state = store.read_json(store.get_run_state_path(model_id))
        assert state["status"] == "finished"
        assert state["epochs_done"] == E
        pairs = [tuple(p) for p in state["sub_epochs"]]
        assert sorted(pairs) == [(e, p) for e in range(E) for p in range(W)]
        # epochs run in order: every sub-epoch of epoch 0 before any of epoch 1
        assert [e for e, _ in pairs] == sorted(e for e, _ in pairs)
        assert store.listdir(store.get_run_path(model_id)) == ["checkpoint.keras", "state.json"]


@pytest.mark.slow
def test_history_has_train_and_val_metrics_per_epoch(fitted):
    _, result, _, _ = fitted
    for history in result.get_all_model_history().values():
        for key in ("train_loss", "train_accuracy", "val_loss", "val_accuracy"):
            assert len(history[key]) == E, key
            assert all(v == v for v in history[key])  # no NaN
    # The task is learnable: the best model beats chance clearly.
    assert result.get_history()["val_accuracy"][-1] > 0.8


@pytest.mark.slow
def test_best_model_has_the_best_validation_accuracy(fitted):
    _, result, _, _ = fitted
    finals = {i: m.history["val_accuracy"][-1] for i, m in result.models.items()}
    assert finals[result.best_model_id] == max(finals.values())
    board = result.leaderboard()
    assert list(board["model_id"])[0] == result.best_model_id
    assert board["final_val_accuracy"].is_monotonic_decreasing


@pytest.mark.slow
def test_tensorboard_logs_hold_scalars_per_epoch(fitted):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    store, result, _, _ = fitted
    logdir = store.local_path(store.get_logs_path(result.best_model_id))
    acc = EventAccumulator(logdir, size_guidance={"tensors": 0, "scalars": 0})
    acc.Reload()
    tags = acc.Tags()
    names = set(tags.get("scalars", [])) | set(tags.get("tensors", []))
    assert {"val_accuracy", "train_loss"} <= {n.split("/")[-1] for n in names}


@pytest.mark.slow
def test_no_spark_job_or_thread_left_after_fit(fitted):
    import threading

    _, _, spark, _ = fitted
    assert spark.sparkContext.statusTracker().getActiveJobsIds() == []
    assert not [t for t in threading.enumerate() if t.name.startswith("cerebro") and t.is_alive()]


@pytest.mark.slow
def test_fit_on_prepared_data_reuses_the_data(spark, fitted):
    store, _, _, _ = fitted
    meta_before = store.read_bytes(store.get_data_metadata_path())
    backend = SparkBackend(spark.sparkContext, num_workers=W, verbose=0)
    result = _search(
        backend,
        store,
        space={"units": hp_choice([8]), "lr": hp_choice([1e-2])},
        experiment_name="again",
        num_epochs=1,
    ).fit_on_prepared_data()
    assert list(result.models) == ["again-000"]
    assert store.read_bytes(store.get_data_metadata_path()) == meta_before


def test_too_few_slots_fails_fast(spark, local_store):
    backend = SparkBackend(spark.sparkContext, num_workers=3, verbose=0, start_timeout=5)
    t0 = time.monotonic()
    with pytest.raises(ClusterCapacityError, match="num_workers=3"):
        backend._check_capacity()
    assert time.monotonic() - t0 < 10


@pytest.mark.parametrize("bad", [0, -1, 1.5, True, "2"])
def test_num_workers_is_validated(spark, bad):
    with pytest.raises((CerebroValueError, TypeError), match="num_workers"):
        SparkBackend(spark.sparkContext, num_workers=bad)


def _script_cmd(tmp_path, *args):
    """The command line and environment of e2e_script.py with its store under ``tmp_path``."""
    env = dict(os.environ, SPARK_LOCAL_IP="127.0.0.1", PYSPARK_PYTHON=sys.executable)
    cmd = [sys.executable, os.path.join(HERE, "e2e_script.py"), "--store", str(tmp_path / "s")]
    return [*cmd, *args], env


def _script(tmp_path, *args, timeout=400):
    """Run e2e_script.py to the end; return the finished process."""
    cmd, env = _script_cmd(tmp_path, *args)
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)


def _run_script(tmp_path, *args, timeout=400):
    proc = _script(tmp_path, *args, timeout=timeout)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    assert proc.returncode == 0 and lines, proc.stdout[-3000:] + proc.stderr[-5000:]
    return json.loads(lines[-1][len("RESULT ") :])


@pytest.mark.slow
@pytest.mark.cluster
def test_local_cluster_with_two_executors(tmp_path):
    out = _run_script(tmp_path, "--master", "local-cluster[2,1,1024]")
    assert len(out["history"]) == 4
    for history in out["history"].values():
        assert len(history["val_accuracy"]) == E
    assert out["active_jobs"] == [] and out["threads"] == []
    from cerebro.storage import LocalStore

    store = LocalStore(str(tmp_path / "s"))
    for model_id in out["history"]:
        pairs = store.read_json(store.get_run_state_path(model_id))["sub_epochs"]
        assert sorted(map(tuple, pairs)) == [(e, p) for e in range(E) for p in range(W)]


@pytest.mark.slow
def test_ctrl_c_in_the_driver_stops_the_workers(tmp_path):
    out = _run_script(tmp_path, "--interrupt-after", "12", "--epochs", "50", "--rows", "4000")
    assert out["interrupted"] is True
    assert out["active_jobs"] == []
    assert out["threads"] == []
    assert out["stop_seconds"] < 60


def _assert_exactly_once(store_path, history, epochs=E):
    from cerebro.storage import LocalStore

    store = LocalStore(str(store_path))
    for model_id in history:
        state = store.read_json(store.get_run_state_path(model_id))
        assert state["status"] == "finished", state
        pairs = sorted(map(tuple, state["sub_epochs"]))
        assert pairs == [(e, p) for e in range(epochs) for p in range(W)], (model_id, pairs)
        assert store.listdir(store.get_run_path(model_id)) == ["checkpoint.keras", "state.json"]


@pytest.mark.slow
def test_worker_killed_mid_run_local_mode(tmp_path):
    out = _run_script(tmp_path, "--epochs", "3", "--rows", "6000", "--kill-worker-after-hops", "6")
    assert len(out["killed"]) == 1 and out["restarts"] == 1
    assert len(out["history"]) == 4
    _assert_exactly_once(tmp_path / "s", out["history"], epochs=3)
    assert out["active_jobs"] == []


@pytest.mark.slow
@pytest.mark.cluster
def test_workers_killed_twice_on_a_local_cluster(tmp_path):
    out = _run_script(
        tmp_path,
        "--master",
        "local-cluster[2,1,1024]",
        "--epochs",
        "3",
        "--rows",
        "6000",
        "--kill-worker-after-hops",
        "4",
        "12",
    )
    assert len(out["killed"]) == 2 and out["restarts"] == 2
    _assert_exactly_once(tmp_path / "s", out["history"], epochs=3)
    assert out["active_jobs"] == []


def _start_script(tmp_path, *args):
    cmd, env = _script_cmd(tmp_path, *args)
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)


@pytest.mark.slow
def test_driver_killed_then_resumed_equals_an_uninterrupted_run(tmp_path):
    import signal

    from cerebro.storage import LocalStore

    epochs = 3
    store = LocalStore(str(tmp_path / "s"))
    proc = _start_script(tmp_path, "--epochs", str(epochs), "--rows", "6000")
    try:
        deadline = time.monotonic() + 300
        while committed_hops(store) < 6 and time.monotonic() < deadline:
            assert proc.poll() is None, "the run ended before it could be interrupted"
            time.sleep(0.2)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    hops_at_kill = committed_hops(store)
    assert 6 <= hops_at_kill < 4 * epochs * W

    # The same search without resume is refused, the store untouched.
    before = sorted(os.listdir(tmp_path / "s" / "runs"))
    refused = _script(tmp_path, "--epochs", str(epochs), "--rows", "6000", timeout=300)
    assert refused.returncode != 0 and "resume=True" in refused.stderr
    assert sorted(os.listdir(tmp_path / "s" / "runs")) == before

    out = _run_script(tmp_path, "--epochs", str(epochs), "--rows", "6000", "--resume")
    _assert_exactly_once(tmp_path / "s", out["history"], epochs=epochs)

    clean = tmp_path / "clean"
    clean.mkdir()
    ref = _run_script(clean, "--epochs", str(epochs), "--rows", "6000")
    assert sorted(out["history"]) == sorted(ref["history"])
    for model_id, history in ref["history"].items():
        assert {k: len(v) for k, v in out["history"][model_id].items()} == {
            k: len(v) for k, v in history.items()
        }
    resumed = LocalStore(str(tmp_path / "s"))
    for model_id in out["history"]:
        a = resumed.read_json(resumed.get_run_state_path(model_id))["params"]
        b = LocalStore(str(clean / "s")).read_json(resumed.get_run_state_path(model_id))
        assert a == b["params"]


@pytest.mark.slow
def test_too_many_worker_losses_fail_clearly_and_keep_checkpoints(tmp_path):
    from cerebro.storage import LocalStore

    proc = _script(
        tmp_path,
        "--epochs",
        "3",
        "--rows",
        "6000",
        "--kill-worker-after-hops",
        "4",
        "--max-restarts",
        "0",
    )
    assert proc.returncode != 0
    assert "more than max_worker_restarts=0" in proc.stderr
    assert "Every committed checkpoint is in the store" in proc.stderr
    store = LocalStore(str(tmp_path / "s"))
    states = [
        store.read_json(store.get_run_state_path(m))
        for m in store.listdir(store.get_runs_path())
        if not m.startswith("_")
    ]
    assert states and any(s["hops"] > 0 for s in states)
    for state in states:  # every state names a checkpoint that is there and complete
        assert store.exists(state["checkpoint"])
