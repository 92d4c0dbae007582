"""Per-hop overhead of model hopping: saving and loading .keras checkpoints.

Measures, for MLPs of about 10^5 and 10^6 parameters (Adam, so the file holds three copies of
the weights), what a hop costs on a worker:

* save: ``save_checkpoint`` (``model.save`` to a temporary name, renamed into place);
* full load: ``load_checkpoint`` (``keras.saving.load_model``: rebuilds and recompiles);
* state load: ``load_state`` into a cached model (weights member extracted, ``load_weights``);
* load_weights(.keras): Keras reading the variables straight out of the zip (the alternative);
* and the first ``fit`` after a full load (retraces the train function) against a ``fit`` on a
  model whose state was reloaded (reuses it).

Run: ``python benchmarks/checkpoint_overhead.py`` (prints a Markdown table; medians of 7).
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402

from cerebro.keras import load_checkpoint, load_state, save_checkpoint  # noqa: E402
from cerebro.storage import LocalStore  # noqa: E402

SIZES = {"~1e5": (100, (256, 256)), "~1e6": (500, (1024, 512))}
REPEATS = 7


def build(num_features: int, units: tuple[int, ...]) -> keras.Model:
    inputs = keras.Input((num_features,), name="features")
    h = inputs
    for u in units:
        h = keras.layers.Dense(u, activation="relu")(h)
    model = keras.Model(inputs, keras.layers.Dense(1, name="label")(h))
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="mse", metrics=["mae"])
    return model


def median_ms(fn, repeats: int = REPEATS) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return 1000 * statistics.median(times)


def main() -> None:
    store = LocalStore(tempfile.mkdtemp(prefix="cerebro-bench-"))
    rows = []
    for label, (d, units) in SIZES.items():
        model = build(d, units)
        x = np.random.default_rng(0).normal(size=(2000, d)).astype("float32")
        y = x.sum(axis=1)
        model.fit(x, y, batch_size=128, verbose=0)
        url = store.get_run_path("bench") + f"/{label.strip('~')}.keras"
        save_ms = median_ms(lambda m=model, u=url: save_checkpoint(m, store, u))
        size_mb = os.path.getsize(store.local_path(url)) / 1e6
        full_ms = median_ms(lambda u=url: load_checkpoint(store, u), 3)
        cached = load_checkpoint(store, url)
        state_ms = median_ms(lambda m=cached, u=url: load_state(m, store, u))
        direct_ms = median_ms(lambda m=cached, u=url: m.load_weights(store.local_path(u)))

        fresh = load_checkpoint(store, url)
        t0 = time.perf_counter()
        fresh.fit(x, y, batch_size=128, shuffle=False, verbose=0)
        first_fit_ms = 1000 * (time.perf_counter() - t0)
        load_state(fresh, store, url)
        t0 = time.perf_counter()
        fresh.fit(x, y, batch_size=128, shuffle=False, verbose=0)
        warm_fit_ms = 1000 * (time.perf_counter() - t0)
        rows.append(
            (
                label,
                model.count_params(),
                size_mb,
                save_ms,
                full_ms,
                state_ms,
                direct_ms,
                first_fit_ms,
                warm_fit_ms,
            )
        )

    print(
        "| model | params | file MB | save ms | full load ms | state load ms "
        "| load_weights(.keras) ms | 1st fit after full load ms | fit after state load ms |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r[0]} | {r[1]:,} | {r[2]:.1f} | {r[3]:.0f} | {r[4]:.0f} | {r[5]:.0f} "
            f"| {r[6]:.0f} | {r[7]:.0f} | {r[8]:.0f} |"
        )
    print("\nfit: one pass over 2,000 rows, batch 128 (16 steps).")


if __name__ == "__main__":
    main()
