"""The worker's hot path without Spark: where a hop's time goes, with an optional profile.

W :class:`~cerebro.keras.KerasTrainer` objects in one process play the W workers; the K MLPs
of ``mop_benchmark.py`` hop between them through a LocalStore exactly as the driver makes them
hop (train on every partition each epoch, then evaluate on every partition). Running them one
after the other in one process takes the cluster, the scheduler and CPU contention out of the
figures, so two versions of the trainer can be compared on CPU time; the same models are then
trained the plain way (one ``fit`` per model, all rows) for reference.

    .venv/bin/python benchmarks/hop_profile.py [--rows 40000] [--epochs 3] [--profile]

Prints, per task kind and load kind, the mean fit, load and save times, and the totals in wall
and CPU seconds. ``--profile`` adds the top of a cProfile of the MOP part.
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import statistics
import sys
import tempfile
import time
from collections import defaultdict

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _bench import NUM_FEATURES, build_model, grid  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=40_000)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()

    from cerebro.keras.trainer import configure_threads

    configure_threads(1)  # as a worker of local[W] with W workers
    import keras
    import numpy as np

    from cerebro.keras import KerasTrainer, SparkEstimator, create_initial_checkpoint
    from cerebro.storage import LocalStore

    rng = np.random.default_rng(0)
    x = rng.normal(size=(args.rows, NUM_FEATURES)).astype("float32")
    y = ((x[:, 0] * x[:, 1] + np.sin(2 * x[:, 2]) + 0.5 * x[:, 3]) > 0).astype("int32")
    n_val = args.rows // 4
    xv, yv, xt, yt = x[:n_val], y[:n_val], x[n_val:], y[n_val:]
    store = LocalStore(tempfile.mkdtemp(prefix="cerebro-hop-profile-"))
    w_count = args.workers
    trainers = []
    for w in range(w_count):
        t = slice(len(xt) * w // w_count, len(xt) * (w + 1) // w_count)
        v = slice(n_val * w // w_count, n_val * (w + 1) // w_count)
        trainers.append(
            KerasTrainer(
                store,
                {"features": xt[t], "label": yt[t]},
                {"features": xv[v], "label": yv[v]},
                ["features"],
                ["label"],
            )
        )
    configs = grid()
    specs, ckpts = {}, {}
    for i, params in enumerate(configs):
        model_id = f"m{i}"
        est = SparkEstimator(
            model=build_model(params, NUM_FEATURES),
            optimizer=keras.optimizers.Adam(params["lr"]),
            loss="binary_crossentropy",
            metrics=["accuracy"],
            batch_size=params["batch_size"],
        )
        ckpts[model_id] = f"{store.get_run_path(model_id)}/ckpt-00000.keras"
        create_initial_checkpoint(est, store, model_id, ckpts[model_id])
        specs[model_id] = est.worker_spec()

    log = []
    profiler = cProfile.Profile() if args.profile else None
    wall0, cpu0 = time.perf_counter(), time.process_time()
    if profiler:
        profiler.enable()
    hop = 0
    for epoch in range(args.epochs):
        for j in range(w_count):  # every model trains on every partition, in shifting order
            for i in range(len(configs)):
                model_id, w = f"m{i}", (i + j + epoch) % w_count
                hop += 1
                out = f"{store.get_run_path(model_id)}/ckpt-{hop:05d}.keras"
                t0 = time.perf_counter()
                r = trainers[w].train(model_id, specs[model_id], ckpts[model_id], out, epoch, w, 0)
                r.update(task="train", total=time.perf_counter() - t0)
                log.append(r)
                store.delete(ckpts[model_id])
                ckpts[model_id] = out
        for j in range(w_count):
            for i in range(len(configs)):
                model_id, w = f"m{i}", (i + j + epoch + 1) % w_count
                t0 = time.perf_counter()
                r = trainers[w].evaluate(model_id, specs[model_id], ckpts[model_id], w)
                r.update(task="eval", total=time.perf_counter() - t0)
                log.append(r)
    if profiler:
        profiler.disable()
    mop_wall, mop_cpu = time.perf_counter() - wall0, time.process_time() - cpu0

    wall0, cpu0 = time.perf_counter(), time.process_time()
    for params in configs:
        model = build_model(params, NUM_FEATURES)
        model.compile(
            optimizer=keras.optimizers.Adam(params["lr"]),
            loss="binary_crossentropy",
            metrics=["accuracy"],
        )
        model.fit(
            xt,
            yt.reshape(-1, 1),
            batch_size=params["batch_size"],
            epochs=args.epochs,
            validation_data=(xv, yv.reshape(-1, 1)),
            verbose=0,
        )
    plain_wall, plain_cpu = time.perf_counter() - wall0, time.process_time() - cpu0

    groups = defaultdict(list)
    for r in log:
        groups[(r["task"], r["load"])].append(r)
    print(f"{len(configs)} models x {args.epochs} epochs, {w_count} trainers, {len(xt)} rows")
    print("| task | load | n | fit ms | load ms | save ms | other ms |")
    print("|---|---|---|---|---|---|---|")
    for (task, load), rows in sorted(groups.items()):

        def ms(key, rows=rows):
            return 1000 * statistics.fmean(r[key] for r in rows)

        other = 1000 * statistics.fmean(
            r["total"] - r["seconds"] - r["load_seconds"] - r["save_seconds"] for r in rows
        )
        print(
            f"| {task} | {load} | {len(rows)} | {ms('seconds'):.0f} | {ms('load_seconds'):.0f} "
            f"| {ms('save_seconds'):.0f} | {other:.1f} |"
        )
    print(
        f"\nMOP hops: {mop_wall:.1f} s wall, {mop_cpu:.1f} s CPU; plain fit of the same models: "
        f"{plain_wall:.1f} s wall, {plain_cpu:.1f} s CPU; ratio (CPU) {mop_cpu / plain_cpu:.2f}"
    )
    if profiler:
        pstats.Stats(profiler).sort_stats("cumulative").print_stats(30)


if __name__ == "__main__":
    main()
