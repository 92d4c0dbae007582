"""What the benchmarks share: the MLP workload, timing a search, the ideal, the report header.

``mop_benchmark.py``, ``suite.py``, ``hop_profile.py`` and ``original_cerebro_workload.py``
import from here (the scripts' folder is first on ``sys.path`` when they run). Nothing here
imports TensorFlow, Keras, Spark or Cerebro at module level: ``original_cerebro_workload.py``
imports it in another environment, and the suite ships it to Spark's Python workers
(``SparkContext.addPyFile``) for its task-parallel baseline.
"""

from __future__ import annotations

import importlib.metadata
import itertools
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from typing import Any

os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
NUM_FEATURES = 16

# K = 8 configurations: 2 widths x 2 learning rates x 2 batch sizes.
SPACE = {"units": [32, 128], "lr": [1e-3, 1e-2], "batch_size": [128, 512]}


# ---------------------------------------------------------------------- the MLP workload
def build_model(params: dict[str, Any], num_features: int) -> Any:
    """The MLP of one configuration: two hidden ReLU layers, a sigmoid output."""
    import keras

    inputs = keras.Input(shape=(num_features,), name="features")
    h = keras.layers.Dense(params["units"], activation="relu")(inputs)
    h = keras.layers.Dense(params["units"], activation="relu")(h)
    outputs = keras.layers.Dense(1, activation="sigmoid", name="label")(h)
    return keras.Model(inputs, outputs)


def make_estimator_gen_fn(num_features: int) -> Callable[[dict[str, Any]], Any]:
    """``estimator_gen_fn`` of the MLP workload (Adam, binary cross-entropy, accuracy)."""

    def estimator_gen_fn(params: dict[str, Any]) -> Any:
        import keras

        from cerebro.keras import SparkEstimator

        return SparkEstimator(
            model=build_model(params, num_features),
            optimizer=keras.optimizers.Adam(params["lr"]),
            loss="binary_crossentropy",
            metrics=["accuracy"],
            batch_size=params["batch_size"],
        )

    return estimator_gen_fn


def grid(space: dict[str, list[Any]] | None = None) -> list[dict[str, Any]]:
    """Every configuration of ``space`` (default :data:`SPACE`) in ``itertools.product`` order,
    the order ``GridSearch`` uses."""
    space = SPACE if space is None else space
    keys = list(space)
    return [dict(zip(keys, values)) for values in itertools.product(*space.values())]


def synthetic_dataframe(spark: Any, rows: int, seed: int = 7) -> Any:
    """``features`` (16 float32 Gaussians) and a 0/1 ``label`` that needs a non-linear model."""
    from pyspark.sql import functions as F

    df = spark.range(0, rows, numPartitions=4)
    cols = [F.randn(seed + i).cast("float") for i in range(NUM_FEATURES)]
    df = df.select(F.array(*cols).alias("features"), F.randn(seed + 99).alias("noise"))
    x = [F.col("features")[i] for i in range(6)]
    score = x[0] * x[1] + F.sin(2 * x[2]) + 0.5 * x[3] - 0.5 * x[4] * x[4] + 0.3 * x[5] + 0.3
    return df.select("features", ((score + 0.3 * F.col("noise")) > 0).cast("int").alias("label"))


# ---------------------------------------------------------------------- MOP runs
def recording_backend_cls() -> type:
    """A ``SparkBackend`` subclass that keeps the ``ModelHopper`` of its last run."""
    from cerebro.backend import SparkBackend

    class RecordingBackend(SparkBackend):
        """A SparkBackend that keeps the ModelHopper of its last run (its task log)."""

        last_hopper: Any = None

        def run(self, *args: Any, **kwargs: Any) -> Any:
            self.last_hopper = super().run(*args, **kwargs)
            return self.last_hopper

    return RecordingBackend


def run_search(
    backend: Any,
    store: Any,
    estimator_gen_fn: Callable[[dict[str, Any]], Any],
    space: dict[str, list[Any]],
    epochs: int,
    name: str,
    *,
    feature_columns: Sequence[str] = ("features",),
    label_columns: Sequence[str] = ("label",),
) -> dict[str, Any]:
    """Time ``GridSearch.fit_on_prepared_data`` on a :func:`recording_backend_cls` backend.

    Returns the makespan (wall time of the call: worker start-up included, data preparation
    not), its phases, :func:`summarize_tasks` of the hopper's task log, the task log itself
    (times relative to the call), what each worker loaded and each model's final loss.
    """
    from cerebro.tune import GridSearch, hp_choice

    search = GridSearch(
        backend,
        store,
        estimator_gen_fn,
        {k: hp_choice(v) for k, v in space.items()},
        num_epochs=epochs,
        evaluation_metric="loss",
        feature_columns=list(feature_columns),
        label_columns=list(label_columns),
        seed=1,
        verbose=0,
        experiment_name=name,
    )
    t0 = time.perf_counter()
    result = search.fit_on_prepared_data()
    t1 = time.perf_counter()
    hopper = backend.last_hopper
    stats = summarize_tasks(hopper.task_log, t0, t1, backend.num_workers)
    stats["makespan_s"] = t1 - t0
    first_sent = min(r["sent_at"] for r in hopper.task_log)
    last_received = max(r["received_at"] for r in hopper.task_log)
    stats["startup_s"] = first_sent - t0  # workers started and the first models admitted
    stats["training_s"] = last_received - first_sent
    stats["shutdown_s"] = t1 - last_received
    stats["task_log"] = [
        {k: (round(v - t0, 4) if k in ("sent_at", "received_at") else v) for k, v in r.items()}
        for r in hopper.task_log
    ]
    stats["workers"] = {
        str(w): {k: s.get(k) for k in ("train_rows", "val_rows", "bytes", "load_seconds", "cache")}
        for w, s in sorted(hopper.worker_stats.items())
    }
    stats["models"] = {
        mid: {"params": m.params, "final_val_loss": m.final("val_loss")}
        for mid, m in result.models.items()
    }
    stats["statuses"] = sorted({m.status for m in result.models.values()})
    return stats


def _mean(values: list[float]) -> float:
    return float(statistics.fmean(values)) if values else 0.0


def summarize_tasks(log: list[dict], t_start: float, t_end: float, workers: int) -> dict:
    """Where the makespan went, from the hopper's per-task log."""
    train = [r for r in log if r["kind"] == "train"]
    evals = [r for r in log if r["kind"] == "eval"]
    loads = {k: sum(r.get("load") == k for r in log) for k in ("cached", "state", "full")}
    per_worker = {}
    for w in range(workers):
        rows = sorted((r for r in log if r["worker"] == w), key=lambda r: r["sent_at"])
        gaps = [b["sent_at"] - a["received_at"] for a, b in zip(rows, rows[1:])]
        per_worker[str(w)] = {
            "tasks": len(rows),
            "fit_s": sum(r["seconds"] for r in rows),
            "load_s": sum(r["load_seconds"] for r in rows),
            "save_s": sum(r["save_seconds"] for r in rows),
            "worker_other_s": sum(
                r["worker_seconds"] - r["seconds"] - r["load_seconds"] - r["save_seconds"]
                for r in rows
            ),
            "messaging_s": sum(r["round_trip_seconds"] - r["worker_seconds"] for r in rows),
            "driver_gap_s": sum(gaps),
            "before_first_task_s": rows[0]["sent_at"] - t_start if rows else 0.0,
            "after_last_task_s": t_end - rows[-1]["received_at"] if rows else 0.0,
        }
    moves = 0
    last_worker: dict[str, int] = {}
    for r in sorted(train, key=lambda r: r["sent_at"]):
        if r["model_id"] in last_worker and last_worker[r["model_id"]] != r["worker"]:
            moves += 1
        last_worker[r["model_id"]] = r["worker"]

    def overhead(rows: list[dict]) -> float:
        return _mean([r["round_trip_seconds"] - r["seconds"] for r in rows])

    return {
        "train_tasks": len(train),
        "eval_tasks": len(evals),
        "hops": len(train),
        "worker_moves": moves,
        "load_kinds": loads,
        "fit_s_total": sum(r["seconds"] for r in log),
        "train_fit_s_total": sum(r["seconds"] for r in train),
        "eval_s_total": sum(r["seconds"] for r in evals),
        "per_hop": {
            "load_ms": 1000 * _mean([r["load_seconds"] for r in train]),
            "save_ms": 1000 * _mean([r["save_seconds"] for r in train]),
            "load_ms_by_kind": {
                k: 1000 * _mean([r["load_seconds"] for r in log if r.get("load") == k])
                for k in ("cached", "state", "full")
            },
            "fit_ms_train": 1000 * _mean([r["seconds"] for r in train]),
            "fit_ms_eval": 1000 * _mean([r["seconds"] for r in evals]),
            "overhead_ms_train": 1000 * overhead(train),
            "overhead_ms_eval": 1000 * overhead(evals),
            "messaging_ms": 1000
            * _mean([r["round_trip_seconds"] - r["worker_seconds"] for r in log]),
            "messaging_ms_train": 1000
            * _mean([r["round_trip_seconds"] - r["worker_seconds"] for r in train]),
            "worker_other_ms": 1000
            * _mean(
                [
                    r["worker_seconds"] - r["seconds"] - r["load_seconds"] - r["save_seconds"]
                    for r in log
                ]
            ),
            "worker_other_ms_train": 1000
            * _mean(
                [
                    r["worker_seconds"] - r["seconds"] - r["load_seconds"] - r["save_seconds"]
                    for r in train
                ]
            ),
            "driver_ms": 1000 * _mean([r["driver_seconds"] for r in log]),
            "driver_ms_train": 1000 * _mean([r["driver_seconds"] for r in train]),
        },
        "per_worker": per_worker,
    }


# ---------------------------------------------------------------------- the ideal
def _label_for(model: Any, label: Any) -> Any:
    """A 1-D label column shaped ``(n, 1)`` for a single-unit output, as Keras expects."""
    shape = tuple(model.outputs[0].shape) if getattr(model, "outputs", None) else ()
    if getattr(label, "ndim", 0) == 1 and shape and shape[-1] == 1:
        return label.reshape(-1, 1)
    return label


def _as_float32(arr: Any) -> Any:
    import numpy as np

    return arr.astype("float32") if np.issubdtype(arr.dtype, np.floating) else arr


def train_in_memory(
    estimator_gen_fn: Callable[[dict[str, Any]], Any],
    configs: Sequence[dict[str, Any]],
    train: dict[str, Any],
    val: dict[str, Any],
    epochs: int,
    *,
    strict: bool = True,
    steps_per_execution: int | None = None,
    feed: str = "dataset",
    feature: str = "features",
    label: str = "label",
) -> list[dict[str, Any]]:
    """Train every configuration on in-memory numpy arrays and time it.

    Each model is built and compiled as a worker gets it: ``estimator = estimator_gen_fn(
    params)``, then ``model.compile(**estimator.compile_kwargs())`` (the same optimizer, loss,
    metrics and compiled step), then trained with the estimator's batch size for ``epochs``
    epochs, reshuffled each epoch, with a validation pass after each.

    Args:
        strict: build the optimizer and the compiled loss/metric variables before the clock
            starts (as the driver's initial checkpoint and a worker's first load do), so that
            ``seconds`` is pure compute; otherwise ``seconds`` is what a plain user loop pays.
        steps_per_execution: override the compiled ``steps_per_execution`` (1 = Keras'
            default); None keeps the estimator's.
        feed: ``"dataset"`` feeds the arrays as the workers do (each epoch the arrays are
            permuted in memory and batched with ``tf.data.Dataset.from_tensor_slices``; one
            ``fit`` call per epoch), the fastest way we know, for the ideal; ``"numpy"`` is
            one ``fit(x, y, shuffle=True)`` call, what a plain user script does (Keras then
            slices and gathers the batches itself, 5-25 % slower here).

    Returns:
        Per configuration: ``params``, ``build_seconds`` (estimator, compile, strict
        pre-building), ``seconds`` (training and validation), ``val_loss`` and the compiled
        ``steps_per_execution``.
    """
    import keras
    import numpy as np

    from cerebro.keras.trainer import _build_compiled_state

    x, xv = _as_float32(train[feature]), _as_float32(val[feature])
    out = []
    for params in configs:
        keras.utils.set_random_seed(0)
        t0 = time.perf_counter()
        estimator = estimator_gen_fn(dict(params))
        model = estimator.model
        kwargs = estimator.compile_kwargs()
        if steps_per_execution is not None:
            kwargs["steps_per_execution"] = steps_per_execution
        model.compile(**kwargs)
        y, yv = _label_for(model, train[label]), _label_for(model, val[label])
        if strict:
            model.optimizer.build(model.trainable_variables)
            _build_compiled_state(model, x, y)
        t1 = time.perf_counter()
        if feed == "numpy":
            hist = model.fit(
                x,
                y,
                batch_size=estimator.batch_size,
                epochs=epochs,
                validation_data=(xv, yv),
                shuffle=True,
                verbose=0,
            )
        else:
            import tensorflow as tf

            bs = estimator.batch_size
            rng = np.random.default_rng(0)
            val_ds = tf.data.Dataset.from_tensor_slices((xv, yv)).batch(bs)
            for epoch in range(epochs):
                perm = rng.permutation(len(x))
                ds = tf.data.Dataset.from_tensor_slices((x[perm], y[perm])).batch(bs)
                hist = model.fit(
                    ds, epochs=epoch + 1, initial_epoch=epoch, validation_data=val_ds, verbose=0
                )
        out.append(
            {
                "params": dict(params),
                "build_seconds": t1 - t0,
                "seconds": time.perf_counter() - t1,
                "val_loss": float(hist.history["val_loss"][-1]),
                "steps_per_execution": int(getattr(model, "steps_per_execution", 1) or 1),
            }
        )
    return out


# ---------------------------------------------------------------------- child processes
def run_child(
    cmd: list[str], marker: str, env: dict | None = None, timeout: float | None = None
) -> dict:
    """Run ``cmd`` and return the JSON on its stdout line that starts with ``marker``."""
    pipe = subprocess.PIPE
    # Its own process group, so that a timeout ends it and the Spark processes it started.
    proc = subprocess.Popen(
        cmd, stdout=pipe, stderr=pipe, text=True, env=env, start_new_session=True
    )
    try:
        return child_result(cmd, proc, *proc.communicate(timeout=timeout), marker)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise RuntimeError(f"did not finish within {timeout:.0f} s (stopped)") from None


def child_result(cmd: list[str], proc: Any, stdout: str, stderr: str, marker: str) -> dict:
    """The JSON after ``marker`` in a finished child's stdout, or a RuntimeError with its tail."""
    for line in stdout.splitlines():
        if line.startswith(marker):
            return json.loads(line[len(marker) :])
    raise RuntimeError(
        f"{cmd[0]} {cmd[1]} failed (exit {proc.returncode}):\n{stdout[-3000:]}\n{stderr[-5000:]}"
    )


# ---------------------------------------------------------------------- report header
def machine_info() -> dict:
    """Cores, CPU model, memory and the load average now (``loadavg_start``)."""
    info: dict[str, Any] = {"cores": os.cpu_count(), "platform": platform.platform()}
    try:
        with open("/proc/cpuinfo") as f:
            models = [ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")]
        info["cpu_model"] = models[0] if models else platform.processor()
        with open("/proc/meminfo") as f:
            kb = int(next(ln for ln in f if ln.startswith("MemTotal")).split()[1])
        info["memory_gib"] = round(kb / 2**20, 1)
    except (OSError, StopIteration):
        pass
    info["loadavg_start"] = list(os.getloadavg())
    return info


def _git(*args: str) -> str:
    try:
        return subprocess.run(
            ["git", "-C", REPO, *args], capture_output=True, text=True, timeout=30
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def versions() -> dict:
    """Versions of Python, the pinned libraries, Cerebro and the git commit of this tree."""
    out = {"python": platform.python_version()}
    for dist in ("pyspark", "tensorflow-cpu", "keras", "numpy", "pyarrow", "petastorm"):
        try:
            out[dist.removesuffix("-cpu")] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            out[dist.removesuffix("-cpu")] = "not installed"
    try:
        out["cerebro"] = importlib.metadata.version("cerebro-mop")
    except importlib.metadata.PackageNotFoundError:
        out["cerebro"] = "?"
    rev = _git("rev-parse", "--short", "HEAD") or "unknown"
    dirty = _git("status", "--porcelain", "cerebro")
    out["git"] = rev + ("+local changes" if dirty else "")
    return out


def write_atomic(path: str, data: str | bytes) -> None:
    """Write ``data`` to ``path`` through a temporary name and a rename; world-readable."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(os.path.abspath(path)), prefix=".tmp-")
    try:
        with os.fdopen(fd, "wb" if isinstance(data, bytes) else "w") as f:
            f.write(data)
        os.chmod(tmp, 0o644)  # mkstemp makes it private; results are for everyone to read
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
