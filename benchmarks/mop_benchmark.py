"""How close MOP training gets to pure compute: makespan against the ideal, side by side.

One command::

    .venv/bin/python benchmarks/mop_benchmark.py [--quick] [--repeats N]
        [--compare-original /path/to/other/venv/bin/python]

It builds a seeded synthetic tabular dataset (or the NYC flights data with ``--data flights``),
prepares it once with ``SparkBackend.prepare_data``, then, ``--repeats`` times in turn:

* **MOP**: ``GridSearch`` trains K=8 MLP configurations for E epochs on W workers
  (``local[W]``); the *makespan* is the wall time of ``fit_on_prepared_data`` (worker start-up
  included, data preparation not);
* **ideal**: in a fresh subprocess (so its TensorFlow thread settings are clean) every
  configuration trains on the same training rows held in memory as numpy arrays, with the same
  batch size, epochs, validation pass per epoch and TensorFlow threads as a worker; the ideal is
  the sum of those times divided by W (perfect parallelism, zero overhead).

It reports efficiency = ideal / makespan, the hops and what a hop costs (checkpoint load and
save on the worker, the driver's per-task overhead = round trip minus fit time, messaging and
the driver's own bookkeeping), the worker cache's load kinds, worker data load time and bytes,
and writes ``benchmarks/results/mop_benchmark[_quick].{json,md}``.

``--compare-original PY`` runs the same workload with the original Cerebro (``cerebro-dl``)
installed in another Python environment, in a subprocess, and reports the makespan ratio.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any

os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

HERE = os.path.dirname(os.path.abspath(__file__))
RESULTS = os.path.join(HERE, "results")
NUM_FEATURES = 16

# K = 8 configurations: 2 widths x 2 learning rates x 2 batch sizes.
SPACE = {"units": [32, 128], "lr": [1e-3, 1e-2], "batch_size": [128, 512]}
FULL = {"rows": 300_000, "epochs": 3, "workers": 2}
QUICK = {"rows": 40_000, "epochs": 3, "workers": 2}


# ---------------------------------------------------------------------- workload
def build_model(params: dict[str, Any], num_features: int) -> Any:
    """The MLP of one configuration: two hidden ReLU layers, a sigmoid output."""
    import keras

    inputs = keras.Input(shape=(num_features,), name="features")
    h = keras.layers.Dense(params["units"], activation="relu")(inputs)
    h = keras.layers.Dense(params["units"], activation="relu")(h)
    outputs = keras.layers.Dense(1, activation="sigmoid", name="label")(h)
    return keras.Model(inputs, outputs)


def make_estimator_gen_fn(num_features: int):
    def estimator_gen_fn(params):
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


def grid() -> list[dict[str, Any]]:
    import itertools

    keys = list(SPACE)
    return [dict(zip(keys, values)) for values in itertools.product(*SPACE.values())]


def synthetic_dataframe(spark: Any, rows: int, seed: int = 7) -> Any:
    """``features`` (16 float32 Gaussians) and a 0/1 ``label`` that needs a non-linear model."""
    from pyspark.sql import functions as F

    df = spark.range(0, rows, numPartitions=4)
    cols = [F.randn(seed + i).cast("float") for i in range(NUM_FEATURES)]
    df = df.select(F.array(*cols).alias("features"), F.randn(seed + 99).alias("noise"))
    x = [F.col("features")[i] for i in range(6)]
    score = x[0] * x[1] + F.sin(2 * x[2]) + 0.5 * x[3] - 0.5 * x[4] * x[4] + 0.3 * x[5] + 0.3
    return df.select("features", ((score + 0.3 * F.col("noise")) > 0).cast("int").alias("label"))


def flights_dataframe(spark: Any, rows: int) -> Any:
    sys.path.insert(0, os.path.join(os.path.dirname(HERE), "examples"))
    from flights import flights_dataframe as flights

    return flights(spark, rows).withColumnRenamed("delayed", "label")


# ---------------------------------------------------------------------- MOP run
def _recording_backend_cls():
    from cerebro.backend import SparkBackend

    class RecordingBackend(SparkBackend):
        """A SparkBackend that keeps the ModelHopper of its last run (its task log)."""

        last_hopper: Any = None

        def run(self, *args: Any, **kwargs: Any) -> Any:
            self.last_hopper = super().run(*args, **kwargs)
            return self.last_hopper

    return RecordingBackend


def run_mop(backend: Any, store: Any, num_features: int, epochs: int, name: str) -> dict:
    from cerebro.tune import GridSearch, hp_choice

    search = GridSearch(
        backend,
        store,
        make_estimator_gen_fn(num_features),
        {k: hp_choice(v) for k, v in SPACE.items()},
        num_epochs=epochs,
        evaluation_metric="loss",
        feature_columns=["features"],
        label_columns=["label"],
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
        str(w): {k: s.get(k) for k in ("train_rows", "val_rows", "bytes", "load_seconds")}
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
            "overhead_ms_train": 1000 * overhead(train),
            "overhead_ms_eval": 1000 * overhead(evals),
            "messaging_ms": 1000
            * _mean([r["round_trip_seconds"] - r["worker_seconds"] for r in log]),
            "worker_other_ms": 1000
            * _mean(
                [
                    r["worker_seconds"] - r["seconds"] - r["load_seconds"] - r["save_seconds"]
                    for r in log
                ]
            ),
            "driver_ms": 1000 * _mean([r["driver_seconds"] for r in log]),
        },
        "per_worker": per_worker,
    }


# ---------------------------------------------------------------------- ideal
def ideal_main(config_json: str) -> None:
    """Child process: train every configuration on in-memory numpy arrays, print the times."""
    cfg = json.loads(config_json)
    from cerebro.keras.trainer import configure_threads

    configure_threads(cfg["threads"])  # before TensorFlow runs anything
    import numpy as np

    from cerebro.storage import Store
    from cerebro.storage.dataset import read_shard

    store = Store.create(cfg["store"])
    cols = ["features", "label"]
    train = read_shard(store, "train", 0, 1, columns=cols)
    val = read_shard(store, "val", 0, 1, columns=cols)
    x, y = train["features"].astype("float32"), train["label"].reshape(-1, 1)
    xv, yv = val["features"].astype("float32"), val["label"].reshape(-1, 1)
    import keras

    from cerebro.keras.trainer import _build_compiled_state

    times = []
    for params in cfg["configs"]:
        keras.utils.set_random_seed(0)
        model = build_model(params, x.shape[1])
        model.compile(
            optimizer=keras.optimizers.Adam(params["lr"]),
            loss="binary_crossentropy",
            metrics=["accuracy"],
        )
        # Strict: build the optimizer and the compiled metrics outside the timed part (as the
        # driver's initial checkpoint and a worker's first load do), so that tf.function traces
        # the train step once, not twice.
        model.optimizer.build(model.trainable_variables)
        _build_compiled_state(model, x, y)
        t0 = time.perf_counter()
        hist = model.fit(
            x,
            y,
            batch_size=params["batch_size"],
            epochs=cfg["epochs"],
            validation_data=(xv, yv),
            shuffle=True,
            verbose=0,
        )
        times.append(
            {
                "params": params,
                "seconds": time.perf_counter() - t0,
                "val_loss": float(hist.history["val_loss"][-1]),
            }
        )
    print(
        "IDEAL "
        + json.dumps(
            {
                "configs": times,
                "train_rows": len(x),
                "val_rows": len(xv),
                "threads": cfg["threads"],
                "np": np.__version__,
            }
        ),
        flush=True,
    )


def run_ideal(store_url: str, epochs: int, threads: int, workers: int, concurrent: int) -> dict:
    """Every configuration's compute time, in ``concurrent`` processes at once.

    With ``concurrent=1`` this is the ideal as defined (one process alone). With
    ``concurrent=W`` each of W simultaneous processes trains every configuration, so each
    runs while W-1 others compete for the machine, as MOP's workers do; a configuration's time
    is then the mean over the processes. Either way the ideal is the sum over configurations
    divided by ``workers``.
    """
    cfg = {"store": store_url, "epochs": epochs, "threads": threads, "configs": grid()}
    cmd = [sys.executable, os.path.abspath(__file__), "--ideal-child", json.dumps(cfg)]
    procs = [
        subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(concurrent)
    ]
    outs = [_child_result(cmd, p, *p.communicate(), "IDEAL ") for p in procs]
    per_config = [
        statistics.fmean(o["configs"][i]["seconds"] for o in outs) for i in range(len(grid()))
    ]
    out = dict(outs[0])
    out["configs"] = [dict(c, seconds=t) for c, t in zip(outs[0]["configs"], per_config)]
    out["processes"] = concurrent
    out["compute_s_total"] = sum(per_config)
    out["ideal_s"] = out["compute_s_total"] / workers
    return out


def _run_child(
    cmd: list[str], marker: str, env: dict | None = None, timeout: float | None = None
) -> dict:
    pipe = subprocess.PIPE
    # Its own process group, so that a timeout ends it and the Spark processes it started.
    proc = subprocess.Popen(
        cmd, stdout=pipe, stderr=pipe, text=True, env=env, start_new_session=True
    )
    try:
        return _child_result(cmd, proc, *proc.communicate(timeout=timeout), marker)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise RuntimeError(f"did not finish within {timeout:.0f} s (stopped)") from None


def _child_result(cmd: list[str], proc: Any, stdout: str, stderr: str, marker: str) -> dict:
    for line in stdout.splitlines():
        if line.startswith(marker):
            return json.loads(line[len(marker) :])
    raise RuntimeError(
        f"{cmd[0]} {cmd[1]} failed (exit {proc.returncode}):\n{stdout[-3000:]}\n{stderr[-5000:]}"
    )


# ---------------------------------------------------------------------- original Cerebro
def run_original(python: str, store_dir: str, args: argparse.Namespace) -> dict:
    """Run the same workload with the original Cerebro in another environment."""
    script = os.path.join(HERE, "original_cerebro_workload.py")
    cfg = {
        "rows": args.rows,
        "epochs": args.epochs,
        "workers": args.workers,
        "store": store_dir,
        "configs": grid(),
        "space": SPACE,
        "data": args.data,
        "num_features": NUM_FEATURES,
    }
    env = dict(os.environ, PYSPARK_PYTHON=python)
    return _run_child(
        [python, script, json.dumps(cfg)], "ORIGINAL ", env, timeout=args.original_timeout
    )


# ---------------------------------------------------------------------- report
def machine_info() -> dict:
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


def versions() -> dict:
    import keras
    import numpy
    import pyarrow
    import pyspark
    import tensorflow as tf

    import cerebro

    rev = subprocess.run(
        ["git", "-C", os.path.dirname(HERE), "rev-parse", "--short", "HEAD"],
        capture_output=True,
        text=True,
    ).stdout.strip()
    dirty = subprocess.run(
        ["git", "-C", os.path.dirname(HERE), "status", "--porcelain", "cerebro"],
        capture_output=True,
        text=True,
    ).stdout.strip()
    return {
        "python": platform.python_version(),
        "pyspark": pyspark.__version__,
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "numpy": numpy.__version__,
        "pyarrow": pyarrow.__version__,
        "cerebro": getattr(cerebro, "__version__", "?"),
        "git": rev + ("+local changes" if dirty else ""),
    }


def markdown(report: dict) -> str:
    w = report["workload"]
    lines = [
        f"# MOP benchmark ({'quick' if w['quick'] else 'full'}) - {report['date']}",
        "",
        f"Workload: {w['data']} data, {w['train_rows']:,} train + {w['val_rows']:,} validation "
        f"rows, {w['models']} MLPs x {w['epochs']} epochs on {w['workers']} workers "
        f"(local[{w['workers']}], {w['threads']} TF thread(s) each). Preparation: "
        f"{report['prepare_s']:.1f} s (once, not in the makespan).",
        "",
        "| run | makespan s | ideal s | efficiency | start-up s | training s "
        "| efficiency w/o start-up | ideal, W concurrent s | efficiency vs it | hops | moves "
        "| loads cached/state/full | load ms | save ms | overhead/train task ms "
        "| overhead/eval task ms | messaging ms | driver ms |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for i, r in enumerate(report["runs"]):
        m, h = r["mop"], r["mop"]["per_hop"]
        lk = m["load_kinds"]
        lines.append(
            f"| {i + 1} | {m['makespan_s']:.1f} | {r['ideal']['ideal_s']:.1f} "
            f"| {r['efficiency']:.2f} | {m['startup_s']:.1f} | {m['training_s']:.1f} "
            f"| {r['efficiency_training']:.2f} | {r['ideal_concurrent']['ideal_s']:.1f} "
            f"| {r['efficiency_concurrent']:.2f} | {m['hops']} | {m['worker_moves']} "
            f"| {lk['cached']}/{lk['state']}/{lk['full']} | {h['load_ms']:.0f} "
            f"| {h['save_ms']:.0f} | {h['overhead_ms_train']:.0f} | {h['overhead_ms_eval']:.0f} "
            f"| {h['messaging_ms']:.1f} | {h['driver_ms']:.1f} |"
        )
    s = report["summary"]
    lines += [
        "",
        f"Efficiency (ideal / makespan): median {s['efficiency_median']:.2f} "
        f"(runs: {', '.join(f'{e:.2f}' for e in s['efficiencies'])}); target >= 0.87. "
        f"Against the ideal measured with W processes at once: median "
        f"{s['efficiency_concurrent_median']:.2f}.",
        "",
        "Per worker (last run):",
        "",
        "| worker | rows train/val | bytes | data load s | fit+eval s | ckpt load s | save s "
        "| other s | messaging s | driver gaps s | idle start/end s |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    last = report["runs"][-1]["mop"]
    for wk, p in last["per_worker"].items():
        ws = last["workers"].get(wk, {})
        lines.append(
            f"| {wk} | {ws.get('train_rows', 0):,}/{ws.get('val_rows', 0):,} "
            f"| {ws.get('bytes', 0) / 1e6:.1f} MB | {ws.get('load_seconds', 0):.2f} "
            f"| {p['fit_s']:.1f} | {p['load_s']:.1f} | {p['save_s']:.1f} "
            f"| {p['worker_other_s']:.1f} | {p['messaging_s']:.2f} | {p['driver_gap_s']:.2f} "
            f"| {p['before_first_task_s']:.1f}/{p['after_last_task_s']:.1f} |"
        )
    if report.get("original"):
        o = report["original"]
        lines += ["", "Original Cerebro (cerebro-dl) on the same workload:", ""]
        if "error" in o:
            lines.append(f"- could not run: {o['error']}")
        else:
            lines.append(
                f"- makespan {o['makespan_s']:.1f} s; ratio original / this "
                f"{o['makespan_s'] / s['makespan_median']:.2f}x"
            )
    mi, v = report["machine"], report["versions"]
    lines += [
        "",
        f"Machine: {mi.get('cores')} cores ({mi.get('cpu_model', '?')}), "
        f"{mi.get('memory_gib', '?')} GiB; load average at start "
        f"{', '.join(f'{x:.1f}' for x in mi['loadavg_start'])}, at end "
        f"{', '.join(f'{x:.1f}' for x in mi['loadavg_end'])} (shared machine: figures are noisy; "
        "compare ratios within one run).",
        "Versions: " + ", ".join(f"{k} {val}" for k, val in v.items()),
        "",
        "Definitions: makespan = wall time of fit_on_prepared_data (worker start-up included); "
        "ideal = sum over configurations of fit(epochs, validation each epoch) on in-memory "
        "numpy arrays in one process with the workers' TF threads, divided by the number of "
        "workers; ideal, W concurrent = the same, but measured with W such processes running at "
        "once (each training every configuration), so that it competes for the machine as MOP's "
        "W workers do; start-up = from the call until the first task is sent (workers start, "
        "first models built); hops = training sub-epochs (each reads and writes a checkpoint); "
        "moves = hops where the model changed worker; overhead per task = driver round trip "
        "minus the worker's fit/evaluate time; messaging = round trip minus the worker's "
        "handling time; driver = the driver's bookkeeping per result (state.json, TensorBoard, "
        "scheduling).",
    ]
    return "\n".join(lines) + "\n"


def write_atomic(path: str, text: str) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), prefix=".tmp-")
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(tmp, path)


# ---------------------------------------------------------------------- main
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="CI-sized run (~1-2 minutes)")
    parser.add_argument("--rows", type=int, default=None)
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--workers", type=int, default=None)
    parser.add_argument("--repeats", type=int, default=2, help="MOP + ideal pairs to run")
    parser.add_argument("--data", choices=["synthetic", "flights"], default="synthetic")
    parser.add_argument("--store", default=None, help="store folder (default: a temp folder)")
    parser.add_argument("--compare-original", metavar="PYTHON", default=None)
    parser.add_argument(
        "--original-timeout", type=float, default=1800.0, help="seconds (default 1800)"
    )
    parser.add_argument("--out", default=RESULTS)
    parser.add_argument("--ideal-child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.ideal_child is not None:
        ideal_main(args.ideal_child)
        return
    sizes = QUICK if args.quick else FULL
    args.rows = args.rows or sizes["rows"]
    args.epochs = args.epochs or sizes["epochs"]
    args.workers = args.workers or sizes["workers"]
    machine = machine_info()

    import logging

    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s: %(message)s")
    from pyspark.sql import SparkSession

    from cerebro.storage import LocalStore

    spark = (
        SparkSession.builder.master(f"local[{args.workers}]")
        .appName("cerebro-mop-benchmark")
        .config("spark.ui.enabled", "false")
        .config("spark.driver.memory", "3g")
        .config("spark.sql.shuffle.partitions", "4")
        .getOrCreate()
    )
    spark.sparkContext.setLogLevel("ERROR")
    store_dir = args.store or tempfile.mkdtemp(prefix="cerebro-mop-bench-")
    store = LocalStore(store_dir)
    backend = _recording_backend_cls()(spark.sparkContext, num_workers=args.workers, verbose=0)
    try:
        df = (
            synthetic_dataframe(spark, args.rows)
            if args.data == "synthetic"
            else flights_dataframe(spark, args.rows)
        )
        t0 = time.perf_counter()
        meta = backend.prepare_data(
            store, df, validation=0.25, feature_columns=["features"], label_columns=["label"]
        )
        prepare_s = time.perf_counter() - t0
        num_features = int(meta.column_shapes()["features"][0])
        threads = backend._threads()
        import keras  # noqa: F401  (a user's script has imported it before fit)

        runs = []
        for i in range(args.repeats):
            mop = run_mop(backend, store, num_features, args.epochs, f"bench{i}")
            ideal = run_ideal(store.prefix_path, args.epochs, threads, args.workers, 1)
            shared = run_ideal(store.prefix_path, args.epochs, threads, args.workers, args.workers)
            eff = ideal["ideal_s"] / mop["makespan_s"]
            runs.append(
                {
                    "mop": mop,
                    "ideal": ideal,
                    "ideal_concurrent": shared,
                    "efficiency": eff,
                    "efficiency_training": ideal["ideal_s"] / mop["training_s"],
                    "efficiency_concurrent": shared["ideal_s"] / mop["makespan_s"],
                }
            )
            print(
                f"run {i + 1}: makespan {mop['makespan_s']:.1f}s (start-up "
                f"{mop['startup_s']:.1f}s), ideal {ideal['ideal_s']:.1f}s (concurrent "
                f"{shared['ideal_s']:.1f}s), efficiency {eff:.2f}",
                flush=True,
            )
    finally:
        spark.stop()
    name = "mop_benchmark_quick" if args.quick else "mop_benchmark"
    report = _report(args, machine, meta, num_features, threads, prepare_s, runs, None)
    _save(report, args.out, name)  # the MOP figures are kept even if the comparison fails
    if args.compare_original:
        try:
            original = run_original(args.compare_original, tempfile.mkdtemp(), args)
        except Exception as e:  # reported, not fatal: the main figures stand alone
            original = {"error": str(e)[-2000:]}
        report = _report(args, machine, meta, num_features, threads, prepare_s, runs, original)
        _save(report, args.out, name)
    print(markdown(report))


def _report(
    args: argparse.Namespace,
    machine: dict,
    meta: Any,
    num_features: int,
    threads: int,
    prepare_s: float,
    runs: list[dict],
    original: dict | None,
) -> dict:
    effs = [r["efficiency"] for r in runs]
    machine = dict(machine, loadavg_end=list(os.getloadavg()))
    return {
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "machine": machine,
        "versions": versions(),
        "workload": {
            "quick": args.quick,
            "data": args.data,
            "rows": args.rows,
            "train_rows": meta.split_rows("train"),
            "val_rows": meta.split_rows("val"),
            "num_features": num_features,
            "models": len(grid()),
            "space": SPACE,
            "epochs": args.epochs,
            "workers": args.workers,
            "threads": threads,
        },
        "prepare_s": prepare_s,
        "runs": runs,
        "summary": {
            "efficiencies": effs,
            "efficiency_median": statistics.median(effs),
            "efficiency_concurrent_median": statistics.median(
                r["efficiency_concurrent"] for r in runs
            ),
            "makespan_median": statistics.median(r["mop"]["makespan_s"] for r in runs),
            "ideal_median": statistics.median(r["ideal"]["ideal_s"] for r in runs),
            "target_efficiency": 0.87,
        },
        "original": original,
    }


def _save(report: dict, out: str, name: str) -> None:
    write_atomic(os.path.join(out, name + ".json"), json.dumps(report, indent=1))
    write_atomic(os.path.join(out, name + ".md"), markdown(report))


if __name__ == "__main__":
    main()
