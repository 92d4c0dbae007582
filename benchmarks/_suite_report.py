"""The suite's report: ``RESULTS*.md`` (tables), PNG plots and the raw JSON, written atomically.

Kept apart from ``suite.py`` so that the measuring code and the presentation can be read (and
changed) separately; :func:`write_report` takes the dictionary ``suite.run_suite`` returns.
"""

from __future__ import annotations

import io
import json
import os
import statistics
from typing import Any

from _bench import write_atomic

RESULTS_NAME = {"full": "RESULTS.md", "medium": "RESULTS_medium.md", "quick": "RESULTS_quick.md"}


def write_report(report: dict[str, Any], out: str) -> list[str]:
    """Write the Markdown report, the plots and the JSON under ``out``; returns their paths."""
    mode = report["mode"]
    results = os.path.join(out, "results")
    prefix = f"suite-{mode}"
    paths = []
    for name, fig in plots(report).items():
        path = os.path.join(results, f"{prefix}-{name}.png")
        write_atomic(path, fig)
        paths.append(path)
    path = os.path.join(results, f"{prefix}.json")
    write_atomic(path, json.dumps(report, indent=1, default=float))
    paths.append(path)
    path = os.path.join(out, RESULTS_NAME[mode])
    write_atomic(path, markdown(report, f"results/{prefix}"))
    paths.append(path)
    return paths


# ---------------------------------------------------------------------- Markdown
def _f(value: float, digits: int = 1) -> str:
    return f"{value:,.{digits}f}"


def _table(header: list[str], rows: list[list[Any]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return lines + [""]


def _consumption(base: dict[str, Any], epochs: int) -> list[float]:
    """Rows/s each configuration's ``fit`` pushed through the model (train + validation)."""
    rows = base["train_rows"] + base["val_rows"]
    return [rows * epochs / c["seconds"] for c in base["configs"]]


def markdown(report: dict[str, Any], plot_prefix: str) -> str:
    """The report as Markdown: header, targets, comparisons, breakdowns, scaling, hops, input."""
    mode, s = report["mode"], report["summary"]
    mi, v = report["machine"], report["versions"]
    sizes = report["sizes"]
    lines = [
        f"# Cerebro benchmark suite ({mode}) - {report['date']}",
        "",
        "## Machine and versions",
        "",
        f"- Date: {report['date']}; the suite ran {report['suite_s'] / 60:.1f} min.",
        f"- Machine: {mi.get('cores')} cores ({mi.get('cpu_model', '?')}), "
        f"{mi.get('memory_gib', '?')} GiB memory; load average (1, 5, 15 min) at start "
        f"{', '.join(_f(x, 2) for x in mi['loadavg_start'])}, at end "
        f"{', '.join(_f(x, 2) for x in mi['loadavg_end'])}.",
        "- Versions: " + ", ".join(f"{k} {val}" for k, val in v.items() if k != "git"),
        f"- Git commit: {v.get('git')}",
        "- Load average (1 min) as each phase began: "
        + "; ".join(f"{p['phase']} {p['loadavg_1min']:.1f}" for p in report.get("phases", [])),
        "",
        "Every ratio below compares figures measured in this run. On a machine shared with "
        "other work the absolute times move by 10-30 % between runs; the ratios less so.",
        "",
        "## Targets",
        "",
    ]
    lines += _table(
        ["target", "measured", "result"],
        [[t["target"], t["measured"], "PASS" if t["pass"] else "**MISS**"] for t in s["targets"]],
    )
    missed = [t for t in s["targets"] if not t["pass"]]
    if missed:
        lines += ["### Where the time goes (missed targets)", ""]
        lines += _why_missed(report, missed)

    lines += ["## Workloads", ""]
    rows = []
    for name, title, space_key, epochs_key in (
        (
            "mlp",
            "MLP (2 hidden ReLU layers), synthetic tabular, 16 features",
            "mlp_space",
            "mlp_epochs",
        ),
        (
            "cnn",
            "CNN (2 conv/pool blocks), generated 28x28x1 images, 4 classes",
            "cnn_space",
            "cnn_epochs",
        ),
    ):
        d = report["data"][name]
        space = sizes[space_key]
        n = 1
        for values in space.values():
            n *= len(values)
        rows.append(
            [
                title,
                f"{d['train_rows']:,}",
                f"{d['val_rows']:,}",
                f"{n} ({', '.join(f'{k}: {vals}' for k, vals in space.items())})",
                sizes[epochs_key],
                _f(d["parquet_bytes"] / 1e6),
                _f(d["prepare_s"]),
            ]
        )
    lines += _table(
        [
            "workload",
            "train rows",
            "val rows",
            "configurations",
            "epochs",
            "Parquet MB",
            "prepare s (once)",
        ],
        rows,
    )

    lines += ["## Makespan and efficiency", ""]
    lines += _table(
        [
            "workload",
            "W",
            "ideal s",
            "ideal, Keras defaults s",
            "ideal, W concurrent s",
            f"sequential s ({report['sequential_threads']} threads)",
            "task parallel s",
            "MOP s",
            "MOP start-up s",
            "MOP efficiency",
            "vs Keras defaults",
            "vs W concurrent",
            "task-parallel efficiency",
            "MOP / task parallel",
            "sequential / MOP",
        ],
        [
            [
                r["workload"].upper(),
                r["workers"],
                _f(r["ideal_s"]),
                _f(r["ideal_defaults_s"]),
                _f(r["ideal_concurrent_s"]),
                _f(r["sequential_s"]),
                _f(r["task_parallel_s"]),
                _f(r["mop_s"]),
                _f(r["mop_startup_s"]),
                _f(r["efficiency"], 2),
                _f(r["efficiency_defaults"], 2),
                _f(r["efficiency_concurrent"], 2),
                _f(r["tp_efficiency"], 2),
                _f(r["mop_over_tp"], 2),
                _f(r["sequential_over_mop"], 2),
            ]
            for r in s["rows"]
        ],
    )
    spe = sorted({x for r in s["rows"] for x in r["steps_per_execution"]})
    same = all(r["defaults_same"] for r in s["rows"])
    lines += [
        f"The workers compile with `steps_per_execution` = {', '.join(map(str, spe))} (from "
        "`estimator.compile_kwargs()`); the ideal is compiled the same way. "
        + (
            "That is Keras' default, so the 'Keras defaults' ideal is the same measurement."
            if same
            else "The 'Keras defaults' ideal is measured again with `steps_per_execution=1`."
        ),
        "Efficiency = ideal / makespan (1.0 = perfect parallelism with zero overhead); "
        "'vs W concurrent' uses the ideal measured with W processes competing for the cores "
        "as MOP's W workers do. W=1 has no concurrent variant (it is the ideal).",
        "",
        "![makespans](" + plot_prefix + "-times.png)",
        "",
        "## Data each worker or task reads and holds",
        "",
    ]
    lines += _table(
        [
            "workload",
            "W",
            "prepared Parquet MB (all)",
            "MOP: MB held per worker",
            "task parallel: MB read and held per task",
            "task-parallel tasks",
        ],
        [
            [
                r["workload"].upper(),
                r["workers"],
                _f(r["parquet_bytes"] / 1e6),
                _f(r["mop_bytes_per_worker"] / 1e6),
                _f(r["tp_bytes_per_task"] / 1e6),
                r["configs"],
            ]
            for r in s["rows"]
        ],
    )
    lines += [
        "MOP worker *i* reads only the Parquet row groups of shard *i* (1/W of the rows) once; "
        "every task-parallel task reads the whole dataset and holds it while it trains, W "
        "copies in memory at once.",
        "",
        "## MOP: hops and the per-task breakdown",
        "",
    ]
    lines += _mop_table(report)
    lines += _per_worker_tables(report)
    lines += ["## Task parallel: per-task breakdown", ""]
    lines += _tp_table(report)
    lines += _scaling_section(report, plot_prefix)
    lines += _hops_section(report, plot_prefix)
    lines += _input_section(report, plot_prefix)
    lines += [
        "## Definitions",
        "",
        "- **ideal**: the sum over configurations of training time (all epochs, reshuffled "
        "each epoch, a validation pass after each) on in-memory numpy arrays in one process "
        "with the workers' TensorFlow threads (1), divided by W. Each model is built as a "
        "worker builds it (`estimator_gen_fn(params)`, "
        "`model.compile(**estimator.compile_kwargs())`), its optimizer and compiled metrics "
        "are built before the clock starts, and the arrays are fed as the workers feed them "
        "(permuted in memory each epoch, batched with `tf.data.Dataset.from_tensor_slices`), "
        "the fastest way we know; the ideal was measured just before the workload's Spark "
        "runs.",
        "- **ideal, Keras defaults**: the same with `steps_per_execution=1`.",
        "- **ideal, W concurrent**: the same, measured with W such processes at once; a "
        "configuration's time is the mean over the processes.",
        "- **sequential**: one process, all cores as TensorFlow threads, the configurations "
        "one after another, each a plain `fit(x, y, shuffle=True, validation_data=...)` on the "
        "numpy arrays (what a user script does); build, compile and `fit` counted.",
        "- **task parallel**: one Spark task per configuration on `local[W]` (Hyperopt "
        "SparkTrials style); each reads the full prepared train and validation data with "
        "`read_shard(store, split, 0, 1)`, builds and compiles its model as above and trains "
        "it with a plain `fit` on the numpy arrays; makespan = wall time of the Spark job.",
        "- **MOP**: `GridSearch.fit_on_prepared_data` on a `SparkBackend` with W workers; "
        "makespan = wall time of the call (worker start-up included, data preparation not).",
        "- Before every Spark run (MOP or task parallel) a warm-up job imports TensorFlow in "
        "W Spark Python workers, so both start with warm Python workers whatever their order; "
        "the warm-up is not counted in either.",
        "- **hop**: a training sub-epoch of one model on one worker's partition; per-hop "
        "overhead = checkpoint state load + checkpoint save (+ in MOP runs the driver round "
        "trip: messaging, worker bookkeeping, driver bookkeeping).",
        "- **receive + report**: driver round trip minus the worker's handling time (pickled "
        "request and result on the channel); **other**: the worker's time outside load, "
        "fit and save (shuffling the shard, building feeds); **driver**: the driver's work per "
        "result (state.json, TensorBoard, scheduling).",
        "",
    ]
    return "\n".join(lines)


def _row(report: dict[str, Any], workload: str, workers: int) -> dict[str, Any]:
    return next(
        r
        for r in report["summary"]["rows"]
        if r["workload"] == workload and r["workers"] == workers
    )


def _why_missed(report: dict[str, Any], missed: list[dict[str, Any]]) -> list[str]:
    lines: list[str] = []
    shown: set[str] = set()  # MOP runs whose breakdown is already in the text
    for t in missed:
        lines += [f"**{t['target']}**: {t['measured']}.", ""]
        if t["target"].startswith("MOP efficiency"):
            lines += _efficiency_breakdown(report, "mlp", 2)
            shown.add("mlp")
        elif t["target"].startswith("per-hop"):
            bad = [
                h for h in report["hops"] if h["hop_overhead_ms"] / 1000 / h["sub_epoch_s"] >= 0.05
            ]
            lines += [
                "Sizes over the limit: "
                + "; ".join(
                    f"{h['params']:,} parameters: state load {h['state_load_ms']:.0f} ms + save "
                    f"{h['save_ms']:.0f} ms against {h['sub_epoch_s']:.2f} s of training"
                    for h in bad
                )
                + ". Both scale with the checkpoint (weights and Adam's two slots), the "
                "training time with rows x parameters: small models on 100k rows train too "
                "fast for a file round trip to vanish.",
                "",
            ]
        elif t["target"].startswith("MOP makespan <="):
            name = t["target"].split(",")[1].strip().lower()
            run = report["runs"][f"{name}-w2"]
            tp, mop = run["task_parallel"], run["mop"]
            lines += [
                f"Task parallel: {len(tp['tasks'])} tasks, fit {tp['fit_s_total']:.1f} s in "
                f"all, reading the full data {tp['read_s_total']:.1f} s in all, building "
                f"{tp['build_s_total']:.1f} s; MOP workers' fit+evaluate "
                f"{mop['fit_s_total']:.1f} s in all, start-up {mop['startup_s']:.1f} s, "
                f"{mop['hops']} hops at {mop['per_hop']['overhead_ms_train']:.0f} ms overhead "
                "each. " + ("MOP's breakdown is above." if name in shown else "MOP's breakdown:"),
                "",
            ]
            if name not in shown:
                lines += _efficiency_breakdown(report, name, 2)
                shown.add(name)
    return lines


def _efficiency_breakdown(report: dict[str, Any], workload: str, workers: int) -> list[str]:
    r = _row(report, workload, workers)
    mop = report["runs"][f"{workload}-w{workers}"]["mop"]
    h = mop["per_hop"]
    compute = r["ideal_s"] * workers
    lines = [
        f"MOP {workload.upper()} W={workers}: makespan {mop['makespan_s']:.1f} s = start-up "
        f"{mop['startup_s']:.1f} s + training {mop['training_s']:.1f} s + shutdown "
        f"{mop['shutdown_s']:.2f} s. The workers' fit and evaluate time summed over tasks is "
        f"{mop['fit_s_total']:.1f} s against the ideal's {compute:.1f} s of compute "
        f"({mop['fit_s_total'] / compute:.2f}x; the W-concurrent ideal measured "
        f"{r['ideal_concurrent_s'] * workers:.1f} s). Per training task (hop), means in ms: "
        f"receive + report {h['messaging_ms_train']:.1f}, load state {h['load_ms']:.0f} "
        f"(full loads {h['load_ms_by_kind']['full']:.0f}, state loads "
        f"{h['load_ms_by_kind']['state']:.0f}), train {h['fit_ms_train']:.0f}, save "
        f"{h['save_ms']:.0f}, other {h['worker_other_ms_train']:.1f}, driver "
        f"{h['driver_ms_train']:.1f}.",
        "",
    ]
    first = _first_visit_cost(mop["task_log"])
    if first is not None and workers > 1:
        extra_s, train_ms, eval_ms = first
        own = extra_s * (workers - 1) / workers
        ratio = r["ideal_concurrent_s"] / r["ideal_s"]
        lines += [
            f"First visits: a model's first training hop on a worker took {train_ms:.0f} ms "
            f"longer than its later hops there, its first evaluation {eval_ms:.0f} ms longer "
            "(Keras builds the train and test steps and TensorFlow traces them once per "
            f"process): {extra_s:.1f} s of the workers' compute in all. Every worker pays it "
            f"for every model, the ideal once per model, so about {own:.1f} s "
            "of it is MOP's own. Most of the rest is the machine: W processes at once run "
            f"{ratio:.2f}x as long as one alone (the W-concurrent ideal).",
            "",
        ]
    return lines + _per_worker_table(mop) + [""]


def _first_visit_cost(log: list[dict[str, Any]]) -> tuple[float, float, float] | None:
    """Extra seconds of the first train and eval task of each model on each worker over that
    model's later tasks of the same kind: (total s, mean train ms, mean eval ms)."""
    seen: set[tuple[str, str, int]] = set()
    firsts: dict[str, list[dict[str, Any]]] = {"train": [], "eval": []}
    later: dict[tuple[str, str], list[float]] = {}
    for t in log:
        key = (t["kind"], t["model_id"], t["worker"])
        if key in seen:
            later.setdefault((t["kind"], t["model_id"]), []).append(t["seconds"])
        else:
            seen.add(key)
            firsts[t["kind"]].append(t)
    extra: dict[str, list[float]] = {"train": [], "eval": []}
    for kind, tasks in firsts.items():
        for t in tasks:
            rest = later.get((kind, t["model_id"]))
            if rest:
                extra[kind].append(t["seconds"] - sum(rest) / len(rest))
    if not extra["train"] or not extra["eval"]:
        return None
    total = sum(extra["train"]) + sum(extra["eval"])
    mean = {k: 1000 * sum(v) / len(v) for k, v in extra.items()}
    return total, mean["train"], mean["eval"]


def _mop_table(report: dict[str, Any]) -> list[str]:
    rows = []
    for key, run in report["runs"].items():
        m = run["mop"]
        h, lk = m["per_hop"], m["load_kinds"]
        overhead = h["overhead_ms_train"] + h["driver_ms_train"]
        rows.append(
            [
                key.split("-")[0].upper(),
                m["num_workers"],
                m["hops"],
                m["worker_moves"],
                f"{lk['cached']}/{lk['state']}/{lk['full']}",
                _f(h["messaging_ms_train"]),
                _f(h["load_ms"], 0),
                _f(h["fit_ms_train"], 0),
                _f(h["save_ms"], 0),
                _f(h["worker_other_ms_train"]),
                _f(h["driver_ms_train"]),
                _f(overhead, 0),
                f"{overhead / (overhead + h['fit_ms_train']):.1%}",
                _f(h["fit_ms_eval"], 0),
                _f(h["overhead_ms_eval"], 0),
            ]
        )
    lines = _table(
        [
            "workload",
            "W",
            "hops",
            "moves",
            "loads cached/state/full",
            "receive + report ms",
            "load ms",
            "train ms",
            "save ms",
            "other ms",
            "driver ms",
            "overhead per hop ms",
            "overhead share of a hop",
            "eval task ms",
            "eval overhead ms",
        ],
        rows,
    )
    return lines + [
        "Per training task (a hop), means over the run. Overhead per hop = driver round trip "
        "minus the worker's fit time, plus the driver's bookkeeping.",
        "",
    ]


def _per_worker_table(mop: dict[str, Any]) -> list[str]:
    rows = []
    for wk, p in mop["per_worker"].items():
        ws = mop["workers"].get(wk, {})
        rows.append(
            [
                wk,
                f"{ws.get('train_rows', 0):,}/{ws.get('val_rows', 0):,}",
                _f((ws.get("bytes") or 0) / 1e6),
                _f(ws.get("load_seconds") or 0, 2),
                p["tasks"],
                _f(p["fit_s"]),
                _f(p["load_s"]),
                _f(p["save_s"]),
                _f(p["worker_other_s"]),
                _f(p["messaging_s"], 2),
                _f(p["driver_gap_s"], 2),
                f"{p['before_first_task_s']:.1f}/{p['after_last_task_s']:.1f}",
            ]
        )
    return _table(
        [
            "worker",
            "rows train/val",
            "MB",
            "data load s",
            "tasks",
            "fit+eval s",
            "ckpt load s",
            "save s",
            "other s",
            "receive + report s",
            "driver gaps s",
            "idle start/end s",
        ],
        rows,
    )[:-1]


def _per_worker_tables(report: dict[str, Any]) -> list[str]:
    lines = ["Per worker, each run:", ""]
    for key, run in report["runs"].items():
        lines += [f"*{key.upper()}*", ""] + _per_worker_table(run["mop"]) + [""]
    return lines


def _tp_table(report: dict[str, Any]) -> list[str]:
    rows = []
    for key, run in report["runs"].items():
        tp = run["task_parallel"]
        ts = tp["tasks"]
        delays = [t["start_delay_s"] for t in ts]
        rows.append(
            [
                key.split("-")[0].upper(),
                tp["num_workers"],
                len(ts),
                f"{min(delays):.1f}/{max(delays):.1f}",
                _f(statistics.fmean(t["read_s"] for t in ts), 2),
                _f(statistics.fmean(t["build_s"] for t in ts), 2),
                _f(statistics.fmean(t["fit_s"] for t in ts)),
                _f(statistics.fmean(t["other_s"] for t in ts), 2),
                _f(tp["makespan_s"]),
            ]
        )
    return _table(
        [
            "workload",
            "W",
            "tasks",
            "start delay first/last s",
            "read full data s (mean)",
            "build + compile s (mean)",
            "fit s (mean)",
            "other s (mean)",
            "makespan s",
        ],
        rows,
    )


def _scaling_section(report: dict[str, Any], plot_prefix: str) -> list[str]:
    sc = report["scaling"]
    lines = [
        f"## Scaling (MOP, MLP, W=2, {sc['epochs']} epoch(s))",
        "",
        "Makespan as one thing grows; *compute per worker* = the workers' fit and evaluate "
        "time / W (what perfect overlap would take), *fixed* = makespan - compute per worker. "
        "Fit: least-squares line makespan = intercept + slope * x over the points.",
        "",
    ]
    titles = {
        "configs": f"configurations ({sc['base_rows']:,} rows)",
        "rows": "rows",
        "units": f"model size (hidden units; 2 configurations, {sc['base_rows']:,} rows)",
    }
    for axis, title in titles.items():
        points = sc[axis]
        lines += [f"### {title}", ""]
        lines += _table(
            [
                axis,
                "configurations",
                "train rows",
                "parameters",
                "makespan s",
                "start-up s",
                "compute per worker s",
                "fixed s",
                "hops",
            ],
            [
                [
                    f"{p['x']:,}",
                    p["configs"],
                    f"{p['train_rows']:,}",
                    "/".join(f"{q:,}" for q in p["params"]),
                    _f(p["makespan_s"]),
                    _f(p["startup_s"]),
                    _f(p["compute_per_worker_s"]),
                    _f(p["makespan_s"] - p["compute_per_worker_s"]),
                    p["hops"],
                ]
                for p in points
            ],
        )
        fit = sc.get(axis + "_fit")
        if fit:
            unit = "parameter" if axis == "units" else axis.rstrip("s")
            lines += [
                f"Fit: makespan = {fit['intercept']:.1f} s + {fit['slope']:.3g} s per {unit}.",
                "",
            ]
    return lines + ["![scaling](" + plot_prefix + "-scaling.png)", ""]


def _hops_section(report: dict[str, Any], plot_prefix: str) -> list[str]:
    hops = report["hops"]
    suffix = hops[0]["state_file"] if hops else ".keras"
    files = (
        f"each hop writes the model's state (a `{suffix}` file) and the hop that ends an "
        "epoch also a `.keras` archive (every second hop with two workers; that is the case "
        "with early stopping on, where any epoch may be a model's last; without it only a "
        "model's very last hop writes one, so these figures are the worst case)"
        if suffix != ".keras"
        else "each hop writes a `.keras` checkpoint"
    )
    lines = [
        "## Hop cost against model size",
        "",
        "Two `KerasTrainer` objects (one TensorFlow thread) pass one model back and forth "
        f"with the files the driver asks for: {files}. The first visit to each trainer is a "
        "full load, later visits reload the state only (a worker's steady state). Hop "
        "overhead = median state load + save per hop (the mean of the median state save and the "
        "median archive save: every second hop writes both). Sub-epoch time = one warm training "
        "pass over 100k rows (batch 256); for large models it is measured on fewer rows and "
        "scaled to 100k by the measured rows/s (column 'measured on').",
        "",
    ]
    lines += _table(
        [
            "parameters",
            ".keras MB",
            "state load ms",
            "full load ms",
            "state save ms",
            "archive save ms",
            "save per hop ms",
            "hop overhead ms",
            "sub-epoch s (100k rows)",
            "measured on rows",
            "overhead share",
            "without early stopping: overhead ms / share",
            "train rows/s",
        ],
        [
            [
                f"{h['params']:,}",
                _f(h["checkpoint_mb"], 2),
                _f(h["state_load_ms"], 0),
                _f(h["full_load_ms"], 0),
                "-" if h["state_save_ms"] is None else _f(h["state_save_ms"], 0),
                _f(h["archive_save_ms"], 0),
                _f(h["save_ms"], 0),
                _f(h["hop_overhead_ms"], 0),
                _f(h["sub_epoch_s"], 2),
                f"{h['timed_rows']:,}",
                f"{h['hop_overhead_ms'] / 1000 / h['sub_epoch_s']:.1%}",
                f"{h['hop_overhead_plain_ms']:.0f} / "
                f"{h['hop_overhead_plain_ms'] / 1000 / h['sub_epoch_s']:.1%}",
                _f(h["rows_per_s"], 0),
            ]
            for h in hops
        ],
    )
    return lines + ["![hops](" + plot_prefix + "-hops.png)", ""]


def _input_section(report: dict[str, Any], plot_prefix: str) -> list[str]:
    lines = [
        "## Input pipeline against consumption",
        "",
        "Reading the whole prepared training split from Parquet: Petastorm's "
        "`make_batch_reader` (thread pool, decoded to numpy batches) and Cerebro's "
        "`read_shard` (what a worker does once). Consumption = rows per second that one "
        "configuration's `fit` pushed through the model in the ideal (train + validation rows "
        "x epochs / fit time, one thread).",
        "",
    ]
    rows = []
    for name, inp in report["input"].items():
        base = report["baselines"][name]["ideal"]
        epochs = report["sizes"][f"{name}_epochs"]
        cons = _consumption(base, epochs)
        rows.append(
            [
                name.upper(),
                f"{inp['rows']:,}",
                f"{inp['petastorm_rows_per_s']:,.0f} ({inp['petastorm_mb_per_s']:.0f} MB/s)",
                f"{inp['read_shard_rows_per_s']:,.0f} ({inp['read_shard_mb_per_s']:.0f} MB/s)",
                f"{max(cons):,.0f} / {min(cons):,.0f}",
                _f(inp["petastorm_rows_per_s"] / max(cons), 1),
                _f(inp["read_shard_rows_per_s"] / max(cons), 1),
            ]
        )
    lines += _table(
        [
            "workload",
            "rows",
            "Petastorm rows/s",
            "read_shard rows/s",
            "consumed rows/s (fastest / slowest config)",
            "Petastorm / fastest consumer",
            "read_shard / fastest consumer",
        ],
        rows,
    )
    return lines + ["![input](" + plot_prefix + "-input.png)", ""]


# ---------------------------------------------------------------------- plots
def plots(report: dict[str, Any]) -> dict[str, bytes]:
    """The four figures as PNG bytes (matplotlib, Agg backend)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figs = {
        "times": _plot_times(plt, report),
        "scaling": _plot_scaling(plt, report),
        "hops": _plot_hops(plt, report),
        "input": _plot_input(plt, report),
    }
    out = {}
    for name, fig in figs.items():
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
        plt.close(fig)
        out[name] = buf.getvalue()
    return out


def _plot_times(plt: Any, report: dict[str, Any]) -> Any:
    rows = report["summary"]["rows"]
    methods = [
        ("ideal_s", "ideal"),
        ("ideal_concurrent_s", "ideal, W concurrent"),
        ("sequential_s", "sequential"),
        ("task_parallel_s", "task parallel"),
        ("mop_s", "Cerebro MOP"),
    ]
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(13, 4.5), gridspec_kw={"width_ratios": [3, 2]})
    labels = [f"{r['workload'].upper()} W={r['workers']}" for r in rows]
    width = 0.8 / len(methods)
    for i, (key, label) in enumerate(methods):
        xs = [j + (i - len(methods) / 2 + 0.5) * width for j in range(len(rows))]
        ax.bar(xs, [r[key] for r in rows], width, label=label)
    ax.set_xticks(range(len(rows)), labels)
    ax.set_ylabel("seconds")
    ax.set_title("Makespan by method")
    ax.legend(fontsize=8)
    effs = [
        ("efficiency", "MOP vs ideal"),
        ("efficiency_defaults", "MOP vs ideal (Keras defaults)"),
        ("efficiency_concurrent", "MOP vs ideal (W concurrent)"),
        ("tp_efficiency", "task parallel vs ideal"),
    ]
    width = 0.8 / len(effs)
    for i, (key, label) in enumerate(effs):
        xs = [j + (i - len(effs) / 2 + 0.5) * width for j in range(len(rows))]
        ax2.bar(xs, [r[key] for r in rows], width, label=label)
    ax2.axhline(0.9, color="k", ls="--", lw=1, label="target 0.90")
    ax2.set_xticks(range(len(rows)), labels)
    ax2.set_ylabel("ideal / makespan")
    ax2.set_title("Efficiency")
    ax2.legend(fontsize=7)
    return fig


def _plot_scaling(plt: Any, report: dict[str, Any]) -> Any:
    sc = report["scaling"]
    fig, axes = plt.subplots(1, 3, figsize=(14, 4))
    for ax, axis, xlabel in zip(
        axes,
        ("configs", "rows", "units"),
        ("configurations", "rows (train + val)", "parameters per model"),
    ):
        pts = sc[axis]
        xs = [max(p["params"]) if axis == "units" else p["x"] for p in pts]
        ax.plot(xs, [p["makespan_s"] for p in pts], "o-", label="makespan")
        ax.plot(xs, [p["compute_per_worker_s"] for p in pts], "s--", label="compute / W")
        ax.plot(xs, [p["startup_s"] for p in pts], "^:", label="start-up")
        if axis == "units":
            ax.set_xscale("log")
        ax.set_xlabel(xlabel)
        ax.set_ylabel("seconds")
        ax.set_title(f"MOP makespan vs {xlabel}")
        ax.legend(fontsize=8)
    return fig


def _plot_hops(plt: Any, report: dict[str, Any]) -> Any:
    hops = report["hops"]
    ps = [h["params"] for h in hops]
    fig, ax = plt.subplots(figsize=(7, 4.5))
    ax.loglog(ps, [h["hop_overhead_ms"] / 1000 for h in hops], "o-", label="hop overhead")
    ax.loglog(ps, [h["state_load_ms"] / 1000 for h in hops], "x:", label="state load")
    ax.loglog(ps, [h["save_ms"] / 1000 for h in hops], "+:", label="checkpoint save")
    ax.loglog(ps, [h["sub_epoch_s"] for h in hops], "s-", label="sub-epoch, 100k rows")
    ax.loglog(ps, [0.05 * h["sub_epoch_s"] for h in hops], "k--", lw=1, label="5% of it")
    ax.set_xlabel("parameters")
    ax.set_ylabel("seconds")
    ax.set_title("Per-hop cost against model size")
    ax.legend(fontsize=8)
    return fig


def _plot_input(plt: Any, report: dict[str, Any]) -> Any:
    names = list(report["input"])
    fig, ax = plt.subplots(figsize=(7, 4.5))
    series = [
        (
            "Petastorm make_batch_reader",
            [report["input"][n]["petastorm_rows_per_s"] for n in names],
        ),
        ("Cerebro read_shard", [report["input"][n]["read_shard_rows_per_s"] for n in names]),
        (
            "fastest consumer (fit)",
            [
                max(_consumption(report["baselines"][n]["ideal"], report["sizes"][f"{n}_epochs"]))
                for n in names
            ],
        ),
    ]
    width = 0.8 / len(series)
    for i, (label, values) in enumerate(series):
        xs = [j + (i - len(series) / 2 + 0.5) * width for j in range(len(names))]
        ax.bar(xs, values, width, label=label)
    ax.set_yscale("log")
    ax.set_xticks(range(len(names)), [n.upper() for n in names])
    ax.set_ylabel("rows / s")
    ax.set_title("Input pipeline against consumption")
    ax.legend(fontsize=8)
    return fig
