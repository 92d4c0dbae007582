"""The worker-side trainer: model hopping between workers through checkpoint files."""

from __future__ import annotations

import math
import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
from keras_helpers import all_variables, mlp, regression_data, slice_rows

from cerebro.exceptions import (
    CerebroTypeError,
    CerebroValueError,
    ColumnError,
    NonFiniteLossError,
    StoreError,
    TrainingError,
)
from cerebro.keras import (
    KerasTrainer,
    SparkEstimator,
    aggregate_metrics,
    configure_threads,
    create_initial_checkpoint,
    load_checkpoint,
    load_state,
    shuffle_seed,
)
from cerebro.storage import LocalStore

FEATURES, LABELS = ["features"], ["label"]
TRAIN_ROWS, VAL_ROWS = 2400, 800


@pytest.fixture(scope="module")
def data():
    train = regression_data(TRAIN_ROWS, seed=1)
    val = regression_data(VAL_ROWS, seed=2)
    return train, val


def partitions(data, num):
    train, val = data
    t, v = TRAIN_ROWS // num, VAL_ROWS // num
    return [
        (slice_rows(train, i * t, (i + 1) * t), slice_rows(val, i * v, (i + 1) * v))
        for i in range(num)
    ]


def make_estimator(lr=5e-3, batch_size=32, units=16):
    keras.utils.set_random_seed(123)  # the same initial weights every time
    return SparkEstimator(
        mlp(units=units), keras.optimizers.Adam(lr), "mse", metrics=["mae"], batch_size=batch_size
    )


def ckpt(store, model_id, hop):
    return f"{store.get_run_path(model_id)}/ckpt-{hop:05d}.keras"


def run_mop(store, trainers, spec, model_id, epochs, seed=7):
    """Drive trainers like the MOP driver does: every epoch, each partition once, in an order
    that changes with the epoch; then evaluate on every partition."""
    url, hop, history = ckpt(store, model_id, 0), 0, []
    num = len(trainers)
    for epoch in range(epochs):
        order = [(epoch + i) % num for i in range(num)]
        for p in order:
            out = ckpt(store, model_id, hop + 1)
            trainers[p].train(model_id, spec, url, out, epoch, p, seed)
            url, hop = out, hop + 1
        evals = [trainers[p].evaluate(model_id, spec, url, p) for p in range(num)]
        history.append(aggregate_metrics(evals))
    return url, history


# ---------------------------------------------------------------------- the key claim
def test_hopping_between_two_workers_matches_training_in_one_process(local_store, data):
    """MOP is sequential SGD over the same data: it must reach the validation loss of the
    same model trained in one process on all data, with the same settings and epochs."""
    epochs, batch = 6, 32
    est = make_estimator(batch_size=batch)
    create_initial_checkpoint(est, local_store, "mop", ckpt(local_store, "mop", 0))
    spec = est.worker_spec()
    parts = partitions(data, 2)
    trainers = [KerasTrainer(local_store, t, v, FEATURES, LABELS) for t, v in parts]
    last, mop_history = run_mop(local_store, trainers, spec, "mop", epochs)

    # The same model in one process, on all the data.
    train, val = data
    single = load_checkpoint(local_store, ckpt(local_store, "mop", 0))
    initial_val = single.evaluate(val["features"], val["label"], verbose=0, return_dict=True)
    single_history = []
    for _ in range(epochs):
        single.fit(train["features"], train["label"], batch_size=batch, shuffle=True, verbose=0)
        single_history.append(
            single.evaluate(val["features"], val["label"], verbose=0, return_dict=True)
        )

    mop_val, single_val = mop_history[-1]["loss"], single_history[-1]["loss"]
    assert single_val < 0.1 * initial_val["loss"]  # the task is learnt...
    assert mop_val < 0.1 * initial_val["loss"]
    assert abs(mop_val - single_val) <= 0.1 * single_val, (mop_val, single_val)
    # ...along the same curve, not just at the end.
    for m, s in zip(mop_history[1:], single_history[1:]):
        assert abs(m["loss"] - s["loss"]) <= 0.25 * s["loss"], (mop_history, single_history)

    # The optimizer state travelled: its step count is that of all batches of all hops.
    final = keras.saving.load_model(local_store.local_path(last))
    steps_per_pass = sum(math.ceil(len(t["label"]) / batch) for t, _ in parts)
    assert int(final.optimizer.iterations.numpy()) == epochs * steps_per_pass


def test_a_model_hopping_without_its_state_does_worse(local_store, data):
    """Control for the test above: restarting every hop from the first checkpoint (state
    lost) is clearly worse, so the comparison above is sensitive to lost state."""
    est = make_estimator()
    create_initial_checkpoint(est, local_store, "m", ckpt(local_store, "m", 0))
    spec = est.worker_spec()
    parts = partitions(data, 2)
    trainers = [KerasTrainer(local_store, t, v, FEATURES, LABELS) for t, v in parts]
    _, good = run_mop(local_store, trainers, spec, "m", 3)
    first = ckpt(local_store, "m", 0)
    for p, tr in enumerate(trainers):
        tr.train("m", spec, first, ckpt(local_store, "m", 100 + p), 0, p, 7)
    lost = aggregate_metrics(
        [tr.evaluate("m", spec, ckpt(local_store, "m", 101), p) for p, tr in enumerate(trainers)]
    )
    assert lost["loss"] > 2 * good[-1]["loss"]


# ---------------------------------------------------------------------- caching
def test_cached_state_and_full_loads_give_identical_results(local_store, data):
    est = make_estimator()
    create_initial_checkpoint(est, local_store, "m", ckpt(local_store, "m", 0))
    spec = est.worker_spec()
    train, val = partitions(data, 2)[0]
    c0, c1 = ckpt(local_store, "m", 0), ckpt(local_store, "m", 1)

    warm = KerasTrainer(local_store, train, val, FEATURES, LABELS)  # keeps the model cached
    r1 = warm.train("m", spec, c0, c1, 0, 0, 7)
    assert r1["load"] == "full" and r1["checkpoint"] == c1 and r1["rows"] == len(train["label"])
    r_cached = warm.train("m", spec, c1, ckpt(local_store, "m", 2), 1, 0, 7)

    cold = KerasTrainer(local_store, train, val, FEATURES, LABELS)  # never saw the model
    r_full = cold.train("m", spec, c1, ckpt(local_store, "m", 3), 1, 0, 7)

    stale = KerasTrainer(local_store, train, val, FEATURES, LABELS)  # holds another state
    stale.train("m", spec, c0, ckpt(local_store, "m", 4), 0, 0, 99)
    r_state = stale.train("m", spec, c1, ckpt(local_store, "m", 5), 1, 0, 7)

    assert (r_cached["load"], r_full["load"], r_state["load"]) == ("cached", "full", "state")
    assert r_cached["load_seconds"] == 0.0 and r_full["load_seconds"] > 0
    results = [
        keras.saving.load_model(local_store.local_path(ckpt(local_store, "m", h)))
        for h in (2, 3, 5)
    ]
    reference = all_variables(results[0])
    for other in results[1:]:
        for a, b in zip(reference, all_variables(other)):
            np.testing.assert_array_equal(a, b)
    assert r_cached["metrics"] == r_full["metrics"] == r_state["metrics"]


def test_a_checkpoint_rewritten_elsewhere_is_reloaded_not_taken_from_cache(local_store, data):
    """The cache trusts a URL only while the file is the one it saw (size and mtime)."""
    est = make_estimator()
    url = create_initial_checkpoint(est, local_store, "m")  # one fixed name for every hop
    spec = est.worker_spec()
    (t0, v0), (t1, v1) = partitions(data, 2)
    a = KerasTrainer(local_store, t0, v0, FEATURES, LABELS)
    b = KerasTrainer(local_store, t1, v1, FEATURES, LABELS)
    a.train("m", spec, url, url, 0, 0, 7)
    b.train("m", spec, url, url, 0, 1, 7)  # overwrites the file a saved
    r = a.evaluate("m", spec, url, 0)
    assert r["load"] == "state"
    expected = b.evaluate("m", spec, url, 1)  # b holds the latest state
    assert expected["load"] == "cached"
    fresh = KerasTrainer(local_store, t0, v0, FEATURES, LABELS).evaluate("m", spec, url, 0)
    assert r["metrics"] == fresh["metrics"]


def test_lru_cache_and_forget(local_store, data):
    train, val = partitions(data, 2)[0]
    tr = KerasTrainer(local_store, train, val, FEATURES, LABELS, max_cached_models=2)
    specs = {}
    for mid in ("a", "b", "c"):
        est = make_estimator(units=4)
        create_initial_checkpoint(est, local_store, mid)
        specs[mid] = est.worker_spec()
        tr.evaluate(mid, specs[mid], local_store.get_checkpoint_path(mid), 0)
    assert tr.cached_models == ["b", "c"]
    tr.forget("b")
    assert tr.cached_models == ["c"]
    r = tr.evaluate("a", specs["a"], local_store.get_checkpoint_path("a"), 0)
    assert r["load"] == "full"


# ---------------------------------------------------------------------- multi input/output
def test_multi_input_multi_output_model(local_store):
    rng = np.random.default_rng(0)
    n = 1200
    a, b = rng.normal(size=(n, 3)), rng.normal(size=n)
    data = {
        "a": a,
        "b": b,
        "price": a.sum(axis=1) + b,
        "kind": (a[:, 0] > 0).astype(np.int64) + (b > 0).astype(np.int64),  # classes 0..2
    }
    ia, ib = keras.Input((3,), name="a"), keras.Input((1,), name="b")
    h = keras.layers.Dense(16, activation="relu")(keras.layers.Concatenate()([ia, ib]))
    model = keras.Model(
        [ia, ib],
        [keras.layers.Dense(1, name="price")(h), keras.layers.Dense(3, name="kind")(h)],
    )
    est = SparkEstimator(
        model,
        keras.optimizers.Adam(1e-2),
        {
            "price": "mse",
            "kind": keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        },
        metrics={"price": ["mae"], "kind": ["accuracy"]},
        loss_weights={"price": 1.0, "kind": 2.0},
        batch_size=32,
    )
    features, labels = ["b", "a"], ["kind", "price"]  # order differs from the model's
    est.validate(features, labels, {"a": [3], "b": [], "price": [], "kind": []})
    create_initial_checkpoint(est, local_store, "mm", ckpt(local_store, "mm", 0))
    spec = est.worker_spec()
    trainers = [
        KerasTrainer(
            local_store,
            slice_rows(data, i * 400, (i + 1) * 400),
            slice_rows(data, 800 + i * 200, 800 + (i + 1) * 200),
            features,
            labels,
        )
        for i in range(2)
    ]
    _, history = run_mop(local_store, trainers, spec, "mm", 4)
    assert {"loss", "price_loss", "kind_loss", "price_mae", "kind_accuracy"} <= set(history[0])
    assert (
        history[-1]["price_loss"] < 0.3 * history[0]["price_loss"]
        or history[-1]["price_loss"] < 0.05
    )
    assert history[-1]["kind_accuracy"] > 0.85
    # The total loss is the weighted sum of the output losses (up to how Keras averages the
    # uneven last batch of each partition).
    last = history[-1]
    assert last["loss"] == pytest.approx(last["price_loss"] + 2.0 * last["kind_loss"], rel=0.05)


# ---------------------------------------------------------------------- failures
def test_nan_loss_raises_and_saves_nothing(local_store, data):
    keras.utils.set_random_seed(0)
    est = SparkEstimator(mlp(), keras.optimizers.SGD(learning_rate=1e4), "mse", batch_size=8)
    create_initial_checkpoint(est, local_store, "bad", ckpt(local_store, "bad", 0))
    train, val = partitions(data, 2)[0]
    tr = KerasTrainer(local_store, train, val, FEATURES, LABELS)
    out = ckpt(local_store, "bad", 1)
    with pytest.raises(NonFiniteLossError, match=r"model bad reached a non-finite loss") as e:
        tr.train("bad", est.worker_spec(), ckpt(local_store, "bad", 0), out, 0, 0, 1)
    assert isinstance(e.value, TrainingError)
    assert not local_store.exists(out)
    assert "bad" not in tr.cached_models


def test_bad_calls_are_rejected(local_store, data):
    est = make_estimator()
    url = create_initial_checkpoint(est, local_store, "m")
    spec = est.worker_spec()
    train, val = partitions(data, 2)[0]
    tr = KerasTrainer(local_store, train, None, FEATURES, LABELS)
    with pytest.raises(CerebroValueError, match="given no validation data"):
        tr.evaluate("m", spec, url, 0)
    with pytest.raises(CerebroTypeError, match="spec must be a WorkerSpec"):
        tr.train("m", est, url, url, 0, 0, 1)
    with pytest.raises(CerebroValueError, match="epoch must be an int >= 0, got -1"):
        tr.train("m", spec, url, url, -1, 0, 1)
    with pytest.raises(StoreError, match="does not exist"):
        tr.train("m", spec, url + ".missing.keras", url, 0, 0, 1)
    with pytest.raises(ColumnError, match=r"train_data lacks column\(s\) \['label'\]"):
        KerasTrainer(local_store, {"features": train["features"]}, None, FEATURES, LABELS)
    with pytest.raises(CerebroValueError, match="same number of rows"):
        KerasTrainer(
            local_store,
            {"features": train["features"], "label": np.ones(3)},
            None,
            FEATURES,
            LABELS,
        )
    with pytest.raises(CerebroValueError, match="max_cached_models must be an int >= 1"):
        KerasTrainer(local_store, train, None, FEATURES, LABELS, max_cached_models=0)


def test_shape_mismatch_is_found_on_the_worker(local_store, data):
    est = make_estimator()
    url = create_initial_checkpoint(est, local_store, "m")
    train, val = partitions(data, 2)[0]
    narrow = {"features": train["features"][:, :5], "label": train["label"]}
    tr = KerasTrainer(local_store, narrow, None, FEATURES, LABELS)
    with pytest.raises(CerebroValueError, match=r"expects samples of shape \[8\].*shape \[5\]"):
        tr.train("m", est.worker_spec(), url, url, 0, 0, 1)


# ---------------------------------------------------------------------- data handling
def test_transformation_runs_once_per_shard(local_store, data):
    calls = []

    def widen(d):
        calls.append(len(d["label"]))
        x = d["features"][:, :4]
        return {"features": np.concatenate([x, x**2], axis=1), "label": d["label"]}

    keras.utils.set_random_seed(1)
    est = SparkEstimator(
        mlp(num_features=8),
        keras.optimizers.Adam(1e-2),
        "mse",
        batch_size=64,
        transformation_fn=widen,
    )
    url = create_initial_checkpoint(est, local_store, "t")
    spec = est.worker_spec()
    train, val = partitions(data, 2)[0]
    narrow_train = {"features": train["features"][:, :4].copy(), "label": train["label"]}
    narrow_val = {"features": val["features"][:, :4].copy(), "label": val["label"]}
    tr = KerasTrainer(local_store, narrow_train, narrow_val, FEATURES, LABELS)
    for epoch in range(2):
        tr.train("t", spec, url, url, epoch, 0, 3)
        tr.evaluate("t", spec, url, 0)
    assert calls == [len(train["label"]), len(val["label"])]

    def drops_label(d):
        return {"features": d["features"]}

    bad = SparkEstimator(mlp(), keras.optimizers.Adam(), "mse", transformation_fn=drops_label)
    url = create_initial_checkpoint(bad, local_store, "bad")
    with pytest.raises(ColumnError, match=r"must return every feature and label.*\['label'\]"):
        tr.train("bad", bad.worker_spec(), url, url, 0, 0, 3)


def test_shuffle_depends_on_seed_model_epoch_and_partition(local_store, data):
    base = shuffle_seed(1, "m", 0, 0)
    assert base == shuffle_seed(1, "m", 0, 0)
    others = {
        shuffle_seed(2, "m", 0, 0),
        shuffle_seed(1, "n", 0, 0),
        shuffle_seed(1, "m", 1, 0),
        shuffle_seed(1, "m", 0, 1),
    }
    assert base not in others and len(others) == 4
    # And the trainer uses it: the same seed gives the same result, another seed another one.
    est = make_estimator()
    url = create_initial_checkpoint(est, local_store, "m")
    spec = est.worker_spec()
    train, val = partitions(data, 2)[0]
    outs = []
    for seed in (5, 5, 6):
        tr = KerasTrainer(local_store, train, val, FEATURES, LABELS)
        outs.append(tr.train("m", spec, url, ckpt(local_store, "m", seed), 0, 0, seed))
    assert outs[0]["metrics"] == outs[1]["metrics"] != outs[2]["metrics"]


# ---------------------------------------------------------------------- threads
def test_configure_threads_validates_its_argument():
    with pytest.raises(CerebroValueError, match="num_threads must be an int >= 0, got -1"):
        configure_threads(-1)
    with pytest.raises(CerebroValueError, match="inter_op_threads must be an int >= 0"):
        configure_threads(2, "2")


def test_configure_threads_before_and_after_tensorflow_starts():
    script = textwrap.dedent(
        """
        import logging
        logging.basicConfig(level=logging.WARNING)
        from cerebro.keras import configure_threads
        import tensorflow as tf
        assert configure_threads() is True  # from CEREBRO_NUM_THREADS
        t = tf.config.threading
        print("threads", t.get_intra_op_parallelism_threads(),
              t.get_inter_op_parallelism_threads())
        tf.constant(1.0) + 1.0  # TensorFlow starts
        print("again", configure_threads(3), "other", configure_threads(1))
        """
    )
    env = dict(os.environ, CEREBRO_NUM_THREADS="3", TF_CPP_MIN_LOG_LEVEL="3")
    out = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    assert "threads 3 2" in out.stdout
    assert "again True other False" in out.stdout
    assert "cannot set TensorFlow threads" in out.stderr


# ---------------------------------------------------------------------- first hop on a worker
def _count_train_step_traces(model):
    calls = []
    step = model.train_step

    def counting(data):
        calls.append(1)  # runs once per trace of the train function, never per batch
        return step(data)

    model.train_step = counting
    return calls


@pytest.mark.parametrize("prebuild", [True, False])
def test_a_loaded_model_is_traced_once_when_its_compiled_state_is_built_first(
    local_store, data, prebuild
):
    """Keras creates the compiled metrics' variables inside the first trace of the train step,
    and tf.function then traces it again; the trainer builds them first (the control,
    prebuild=False, shows the second trace)."""
    from cerebro.keras.trainer import _build_compiled_state

    est = make_estimator()
    url = create_initial_checkpoint(est, local_store, "m")
    train, _ = partitions(data, 2)[0]
    x, y = train["features"].astype("float32"), train["label"].astype("float32")
    model = load_checkpoint(local_store, url)
    before = len(model.metrics_variables)
    if prebuild:
        _build_compiled_state(model, x, y)
        assert len(model.metrics_variables) > before
        assert all(float(np.sum(np.asarray(v))) == 0.0 for v in model.metrics_variables)
    traces = _count_train_step_traces(model)
    model.fit(x, y, batch_size=32, epochs=1, shuffle=False, verbose=0)
    assert len(traces) == (1 if prebuild else 2)


def test_the_trainer_builds_the_compiled_state_of_multi_output_models(local_store):
    from cerebro.keras.trainer import _build_compiled_state

    ia, ib = keras.Input((3,), name="a"), keras.Input((1,), name="b")
    h = keras.layers.Dense(4, activation="relu")(keras.layers.Concatenate()([ia, ib]))
    model = keras.Model(
        [ia, ib], [keras.layers.Dense(1, name="p")(h), keras.layers.Dense(2, name="k")(h)]
    )
    est = SparkEstimator(
        model,
        keras.optimizers.Adam(1e-2),
        {"p": "mse", "k": keras.losses.SparseCategoricalCrossentropy(from_logits=True)},
        metrics={"p": ["mae"], "k": ["accuracy"]},
        batch_size=16,
    )
    url = create_initial_checkpoint(est, local_store, "mm")
    loaded = load_checkpoint(local_store, url)
    rng = np.random.default_rng(0)
    x = {"a": rng.normal(size=(40, 3)).astype("float32"), "b": rng.normal(size=(40, 1))}
    y = {"p": rng.normal(size=(40, 1)).astype("float32"), "k": rng.integers(0, 2, size=40)}
    x["b"] = x["b"].astype("float32")
    before = len(loaded.metrics_variables)
    _build_compiled_state(loaded, x, y)
    assert len(loaded.metrics_variables) > before
    traces = _count_train_step_traces(loaded)
    loaded.fit(x, y, batch_size=16, epochs=1, shuffle=False, verbose=0)
    assert len(traces) == 1


def test_a_hop_trains_exactly_as_keras_fit_on_the_shuffled_numpy_arrays(local_store, data):
    """The trainer feeds Keras a tf.data pipeline instead of numpy arrays (cheaper per call);
    the batches, their dtypes (float64 data cast to floatx) and so the result are the same."""
    est = make_estimator(batch_size=48)
    url = create_initial_checkpoint(est, local_store, "m")
    train, val = partitions(data, 2)[1]
    tr = KerasTrainer(local_store, train, val, FEATURES, LABELS)
    out = ckpt(local_store, "m", 1)
    result = tr.train("m", est.worker_spec(), url, out, 2, 1, 11)

    model = load_checkpoint(local_store, url)
    perm = np.random.default_rng(shuffle_seed(11, "m", 2, 1)).permutation(len(train["label"]))
    history = model.fit(
        train["features"][perm],
        train["label"][perm].reshape(-1, 1),  # as the trainer shapes it for a (1,) output
        batch_size=48,
        epochs=3,
        initial_epoch=2,
        shuffle=False,
        verbose=0,
    )
    trained = keras.saving.load_model(local_store.local_path(out))
    for a, b in zip(all_variables(trained), all_variables(model)):
        np.testing.assert_array_equal(a, b)
    assert result["metrics"] == {k: float(v[-1]) for k, v in history.history.items()}
    evaluated = tr.evaluate("m", est.worker_spec(), out, 1)
    expected = model.evaluate(
        val["features"], val["label"].reshape(-1, 1), batch_size=48, verbose=0, return_dict=True
    )
    assert evaluated["metrics"] == {k: float(v) for k, v in expected.items()}


def test_steps_per_execution_changes_speed_not_results(tmp_path, data):
    """Cerebro's default of 64 steps per compiled call (fewer Python round trips per step)
    trains and evaluates exactly as one step per call does."""
    results = {}
    for spe in (1, 64):
        store = LocalStore(str(tmp_path / f"spe{spe}"))
        est = make_estimator(batch_size=32)
        est.set_params(steps_per_execution=spe)
        url = create_initial_checkpoint(est, store, "m", ckpt(store, "m", 0))
        assert load_checkpoint(store, url).steps_per_execution == spe
        trainers = [KerasTrainer(store, t, v, FEATURES, LABELS) for t, v in partitions(data, 2)]
        final, history = run_mop(store, trainers, est.worker_spec(), "m", epochs=2)
        results[spe] = (all_variables(load_checkpoint(store, final)), history)
    (w1, h1), (w64, h64) = results[1], results[64]
    for a, b in zip(w1, w64):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    for a, b in zip(h1, h64):
        assert a.keys() == b.keys()
        for k in a:
            assert a[k] == pytest.approx(b[k], rel=1e-5)


# ---------------------------------------------------------------------- memory-mapped shards
def _memory_mapped(data, folder):
    """``data`` saved as .npy files and opened read-only memory-mapped, as a worker's disk
    cache holds its shard."""
    folder.mkdir()
    out = {}
    for i, (name, values) in enumerate(data.items()):
        np.save(folder / f"{i}.npy", values)
        out[name] = np.load(folder / f"{i}.npy", mmap_mode="r")
        assert isinstance(out[name], np.memmap)
    return out


def _hop_and_evaluate(store, est, train, val, features, labels):
    """Two train hops (epochs 1 and 2 on partition 0: two shuffles) and one evaluation; the
    trained variables, the metrics, and the trainer."""
    url = create_initial_checkpoint(est, store, "m", ckpt(store, "m", 0))
    tr = KerasTrainer(store, train, val, features, labels)
    metrics = []
    for epoch in (1, 2):
        out = ckpt(store, "m", epoch)
        metrics.append(tr.train("m", est.worker_spec(), url, out, epoch, 0, 5)["metrics"])
        url = out
    evaluated = tr.evaluate("m", est.worker_spec(), url, 0)
    variables = all_variables(load_checkpoint(store, url))
    return variables, metrics, evaluated["metrics"], tr


def test_memory_mapped_shards_train_and_evaluate_exactly_as_in_memory(tmp_path, data):
    """The disk cache's memmapped columns are gathered batch by batch (sorted reads, then put
    back in shuffle order), never copied whole: the model sees the same batches, so the
    weights and metrics are identical, bit for bit."""
    from cerebro.keras.trainer import _MappedColumn

    train, val = partitions(data, 2)[0]  # 1200 / 400 rows: uneven last batches of 36
    runs = {}
    for name, (t, v) in {
        "memory": (train, val),
        "disk": (_memory_mapped(train, tmp_path / "t"), _memory_mapped(val, tmp_path / "v")),
    }.items():
        store = LocalStore(str(tmp_path / name))
        runs[name] = _hop_and_evaluate(
            store, make_estimator(batch_size=36), t, v, FEATURES, LABELS
        )
    (w_mem, train_mem, eval_mem, _), (w_disk, train_disk, eval_disk, tr) = runs.values()
    for a, b in zip(w_mem, w_disk):
        np.testing.assert_array_equal(a, b)
    assert train_mem == train_disk and eval_mem == eval_disk
    # The columns stayed on disk, shaped ((n,) -> (n, 1)) and cast (to float32) per batch.
    for shard in tr._shards.values():
        assert shard.prepared
        assert all(isinstance(a, _MappedColumn) for a in shard.prepared.values())
    label = next(a for a in tr._shards[("train", None)].prepared.values() if a.shape[1:] == (1,))
    assert label.dtype == np.float32 and label[[3, 1]].shape == (2, 1)
    np.testing.assert_array_equal(label[[3, 1]][:, 0], train["label"][[3, 1]].astype("float32"))


def test_memory_mapped_multi_input_model_matches_in_memory(tmp_path):
    """Dict inputs and outputs, an int label and a scalar column fed to a (1,) input."""
    rng = np.random.default_rng(3)
    n = 300
    a, b = rng.normal(size=(n, 3)), rng.normal(size=n)
    data = {"a": a, "b": b, "price": a.sum(axis=1) + b, "kind": (b > 0).astype(np.int64)}
    runs = []
    for name, shard in (("memory", data), ("disk", _memory_mapped(data, tmp_path / "d"))):
        keras.utils.set_random_seed(5)
        ia, ib = keras.Input((3,), name="a"), keras.Input((1,), name="b")
        h = keras.layers.Dense(8, activation="relu")(keras.layers.Concatenate()([ia, ib]))
        model = keras.Model(
            [ia, ib],
            [keras.layers.Dense(1, name="price")(h), keras.layers.Dense(2, name="kind")(h)],
        )
        est = SparkEstimator(
            model,
            keras.optimizers.Adam(1e-2),
            {"price": "mse", "kind": keras.losses.SparseCategoricalCrossentropy(from_logits=True)},
            metrics={"kind": ["accuracy"]},
            batch_size=32,
        )
        store = LocalStore(str(tmp_path / name))
        runs.append(_hop_and_evaluate(store, est, shard, shard, ["b", "a"], ["kind", "price"]))
    (w_mem, t_mem, e_mem, _), (w_disk, t_disk, e_disk, _) = runs
    for x, y in zip(w_mem, w_disk):
        np.testing.assert_array_equal(x, y)
    assert t_mem == t_disk and e_mem == e_disk


def test_hops_through_state_files_equal_hops_through_keras_archives(tmp_path, data):
    """Between workers a model travels as a state file; a worker that never held the model
    builds it from the model's .keras archive (``model_in``) and then loads the state."""
    finals = {}
    for kind in ("keras", "state"):
        store = LocalStore(str(tmp_path / kind))
        est = make_estimator()
        spec = est.worker_spec()
        init = create_initial_checkpoint(est, store, "m", ckpt(store, "m", 0))
        t0, t1, t_new = (
            KerasTrainer(store, t, v, FEATURES, LABELS) for t, v in partitions(data, 3)
        )
        url, loads = init, []
        for hop, (tr, p) in enumerate([(t0, 0), (t1, 1), (t0, 0), (t_new, 2)], start=1):
            out = f"{store.get_run_path('m')}/h{hop}.{kind}"
            r = tr.train("m", spec, url, out, hop // 2, p, 3, model_in=init)
            url = out
            loads.append(r["load"])
        # t0's second hop reloads only the state; t_new builds from init, then loads the state.
        assert loads == ["full", "full", "state", "full"]
        finals[kind] = all_variables(
            load_checkpoint(store, url) if kind == "keras" else _built(store, init, url)
        )
        assert t1.evaluate("m", spec, url, 1, model_in=init)["load"] == "state"
    for a, b in zip(finals["keras"], finals["state"]):
        np.testing.assert_array_equal(a, b)


def _built(store, archive, state):
    model = load_checkpoint(store, archive)
    assert load_state(model, store, state)
    return model


def test_a_state_file_needs_the_model_archive_and_can_also_write_one(local_store, data):
    est = make_estimator()
    spec = est.worker_spec()
    init = create_initial_checkpoint(est, local_store, "m", ckpt(local_store, "m", 0))
    ((train, val),) = partitions(data, 1)
    tr = KerasTrainer(local_store, train, val, FEATURES, LABELS)
    run = local_store.get_run_path("m")
    r = tr.train("m", spec, init, f"{run}/a.state", 0, 0, 1, keras_out=f"{run}/a.keras")
    assert r["checkpoint"] == f"{run}/a.state" and r["keras_checkpoint"] == f"{run}/a.keras"
    archive = load_checkpoint(local_store, f"{run}/a.keras")
    for a, b in zip(
        all_variables(archive), all_variables(_built(local_store, init, f"{run}/a.state"))
    ):
        np.testing.assert_array_equal(a, b)
    fresh = KerasTrainer(local_store, train, val, FEATURES, LABELS)
    with pytest.raises(CerebroValueError, match="model_in must name the model's .keras archive"):
        fresh.train("m", spec, f"{run}/a.state", f"{run}/b.state", 1, 0, 1)


def test_trainers_silence_only_tensorflows_retracing_warning(local_store, data):
    import logging

    ((train, val),) = partitions(data, 1)
    KerasTrainer(local_store, train, val, FEATURES, LABELS)
    tf_logger = logging.getLogger("tensorflow")

    def record(msg):
        return logging.LogRecord("tensorflow", logging.WARNING, __file__, 1, msg, None, None)

    retracing = "5 out of the last 9 calls to <function f> triggered tf.function retracing."
    assert not tf_logger.filter(record(retracing))
    assert tf_logger.filter(record("something else went wrong"))
