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
  compiled model, batch size, epochs, validation pass per epoch, input feeding and TensorFlow
  threads as a worker (``_bench.train_in_memory``); the ideal is the sum of those times
  divided by W (perfect parallelism, zero overhead).

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
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _bench import (  # noqa: E402  (the pieces shared with suite.py)
    HERE,
    NUM_FEATURES,
    SPACE,
    child_result,
    grid,
    machine_info,
    make_estimator_gen_fn,
    recording_backend_cls,
    run_child,
    run_search,
    synthetic_dataframe,
    train_in_memory,
    versions,
    write_atomic,
)

RESULTS = os.path.join(HERE, "results")
FULL = {"rows": 300_000, "epochs": 3, "workers": 2}
QUICK = {"rows": 40_000, "epochs": 3, "workers": 2}


# ---------------------------------------------------------------------- workload
def flights_dataframe(spark: Any, rows: int) -> Any:
    sys.path.insert(0, os.path.join(os.path.dirname(HERE), "examples"))
    from flights import flights_dataframe as flights

    return flights(spark, rows).withColumnRenamed("delayed", "label")


# ---------------------------------------------------------------------- MOP run
def run_mop(backend: Any, store: Any, num_features: int, epochs: int, name: str) -> dict:
    return run_search(backend, store, make_estimator_gen_fn(num_features), SPACE, epochs, name)


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
    num_features = int(train["features"].shape[1])
    # Strict: the optimizer and the compiled metrics are built outside the timed part (as the
    # driver's initial checkpoint and a worker's first load do), so that tf.function traces
    # the train step once, not twice.
    times = train_in_memory(
        make_estimator_gen_fn(num_features), cfg["configs"], train, val, cfg["epochs"]
    )
    print(
        "IDEAL "
        + json.dumps(
            {
                "configs": times,
                "train_rows": len(train["label"]),
                "val_rows": len(val["label"]),
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
    outs = [child_result(cmd, p, *p.communicate(), "IDEAL ") for p in procs]
    per_config = [
        statistics.fmean(o["configs"][i]["seconds"] for o in outs) for i in range(len(grid()))
    ]
    out = dict(outs[0])
    out["configs"] = [dict(c, seconds=t) for c, t in zip(outs[0]["configs"], per_config)]
    out["processes"] = concurrent
    out["compute_s_total"] = sum(per_config)
    out["ideal_s"] = out["compute_s_total"] / workers
    return out


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
    return run_child(
        [python, script, json.dumps(cfg)], "ORIGINAL ", env, timeout=args.original_timeout
    )


# ---------------------------------------------------------------------- report
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
        "ideal = sum over configurations of training (epochs, validation each epoch, fed as "
        "the workers feed) on in-memory numpy arrays in one process with the workers' TF "
        "threads, divided by the number of "
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
    backend = recording_backend_cls()(spark.sparkContext, num_workers=args.workers, verbose=0)
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
