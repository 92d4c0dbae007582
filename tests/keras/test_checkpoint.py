"""Checkpoints are real .keras files with the optimizer state, written atomically."""

from __future__ import annotations

import os
import zipfile

import keras
import numpy as np
import pytest
from keras_helpers import all_variables, mlp, regression_data

from cerebro.exceptions import CerebroValueError, StoreError
from cerebro.keras import (
    SparkEstimator,
    create_initial_checkpoint,
    load_checkpoint,
    load_state,
    save_checkpoint,
)
from cerebro.keras.checkpoint import save_state
from cerebro.storage._base import TMP_MARKER


def estimator(units=16, lr=1e-2):
    return SparkEstimator(
        mlp(units=units), keras.optimizers.Adam(lr), "mse", metrics=["mae"], batch_size=32
    )


def fit_a_little(model, steps_seed=0):
    data = regression_data(96, seed=steps_seed)
    model.fit(data["features"], data["label"], batch_size=32, epochs=1, verbose=0)


def test_initial_checkpoint_is_a_compiled_keras_file(local_store):
    est = estimator()
    url = create_initial_checkpoint(est, local_store, "m-1")
    assert url == local_store.get_checkpoint_path("m-1")
    path = local_store.local_path(url)
    assert zipfile.is_zipfile(path)
    assert {"config.json", "model.weights.h5"} <= set(zipfile.ZipFile(path).namelist())
    assert os.listdir(os.path.dirname(path)) == ["checkpoint.keras"]  # no temporary left

    model = keras.saving.load_model(path)
    assert isinstance(model.optimizer, keras.optimizers.Adam)
    assert model.optimizer.built and int(model.optimizer.iterations.numpy()) == 0
    assert np.isclose(float(model.optimizer.learning_rate.numpy()), 1e-2)
    # Adam: iterations, learning rate, and two slots per trainable variable.
    assert len(model.optimizer.variables) == 2 + 2 * len(model.trainable_variables)
    for a, b in zip(model.get_weights(), est.model.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_initial_checkpoint_at_a_given_url_and_bad_urls(local_store):
    url = local_store.get_run_path("m") + "/ckpt-00000.keras"
    assert create_initial_checkpoint(estimator(), local_store, "m", url) == url
    assert local_store.listdir(local_store.get_run_path("m")) == ["ckpt-00000.keras"]
    with pytest.raises(
        CerebroValueError, match=r"must end with '\.keras', got '.*ckpt-00000\.h5'"
    ):
        create_initial_checkpoint(estimator(), local_store, "m", url[:-6] + ".h5")
    with pytest.raises(CerebroValueError, match="model_id must be"):
        create_initial_checkpoint(estimator(), local_store, "../escape")


def test_shared_optimizer_instance_is_copied_not_reused(local_store):
    opt = keras.optimizers.Adam(1e-3)
    a = SparkEstimator(mlp(units=4), opt, "mse")
    b = SparkEstimator(mlp(units=8), opt, "mse")
    create_initial_checkpoint(a, local_store, "a")
    create_initial_checkpoint(b, local_store, "b")  # opt is already built for model a
    loaded = keras.saving.load_model(local_store.local_path(local_store.get_checkpoint_path("b")))
    assert len(loaded.optimizer.variables) == 2 + 2 * len(loaded.trainable_variables)


def test_round_trip_keeps_weights_and_optimizer_state(local_store):
    est = estimator()
    create_initial_checkpoint(est, local_store, "m")
    model = est.model
    fit_a_little(model)
    fit_a_little(model, 1)
    assert int(model.optimizer.iterations.numpy()) == 6
    url = local_store.get_run_path("m") + "/ckpt-00001.keras"
    save_checkpoint(model, local_store, url)

    # A plain keras.saving.load_model restores everything, optimizer slots included.
    loaded = keras.saving.load_model(local_store.local_path(url))
    assert int(loaded.optimizer.iterations.numpy()) == 6
    slots = [np.asarray(v) for v in loaded.optimizer.variables[2:]]
    assert any(np.abs(s).sum() > 0 for s in slots)  # moments are really there
    for a, b in zip(all_variables(loaded), all_variables(model)):
        np.testing.assert_array_equal(a, b)

    # So does cerebro's loader, and training goes on from the same state on both.
    again = load_checkpoint(local_store, url)
    data = regression_data(64, seed=3)
    for m in (model, again):
        m.fit(data["features"], data["label"], batch_size=32, shuffle=False, verbose=0)
    for a, b in zip(all_variables(model), all_variables(again)):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)


def test_load_state_into_a_built_model_restores_optimizer_variables(local_store):
    est = estimator()
    create_initial_checkpoint(est, local_store, "m")
    fit_a_little(est.model)
    url = local_store.get_run_path("m") + "/ckpt-00001.keras"
    save_checkpoint(est.model, local_store, url)

    other = load_checkpoint(local_store, local_store.get_checkpoint_path("m"))
    fit_a_little(other, 7)
    fit_a_little(other, 8)  # a different state: 6 iterations, other weights
    assert load_state(other, local_store, url) is True
    assert int(other.optimizer.iterations.numpy()) == 3
    for a, b in zip(all_variables(other), all_variables(est.model)):
        np.testing.assert_array_equal(a, b)


def test_load_state_reports_a_checkpoint_that_does_not_fit(local_store):
    small, big = estimator(units=4), estimator(units=32)
    create_initial_checkpoint(small, local_store, "small")
    create_initial_checkpoint(big, local_store, "big")
    model = load_checkpoint(local_store, local_store.get_checkpoint_path("small"))
    assert load_state(model, local_store, local_store.get_checkpoint_path("big")) is False


def test_missing_checkpoint_is_a_store_error(local_store):
    with pytest.raises(StoreError, match="does not exist"):
        load_checkpoint(local_store, local_store.get_run_path("m") + "/nope.keras")


def test_a_failed_save_leaves_no_file(local_store, monkeypatch):
    est = estimator()
    url = create_initial_checkpoint(est, local_store, "m")
    before = open(local_store.local_path(url), "rb").read()

    def boom(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(est.model, "save", boom)
    with pytest.raises(RuntimeError, match="disk full"):
        save_checkpoint(est.model, local_store, url)
    assert open(local_store.local_path(url), "rb").read() == before
    run_dir = os.path.dirname(local_store.local_path(url))
    assert not [n for n in os.listdir(run_dir) if TMP_MARKER in n]


def test_checkpoints_through_a_copying_store(copying_store):
    est = estimator()
    url = create_initial_checkpoint(est, copying_store, "m")
    assert url.startswith("copy://") and copying_store.exists(url)
    fit_a_little(est.model)
    url2 = copying_store.get_run_path("m") + "/ckpt-1.keras"
    save_checkpoint(est.model, copying_store, url2)
    model = load_checkpoint(copying_store, url)
    assert load_state(model, copying_store, url2) is True
    for a, b in zip(all_variables(model), all_variables(est.model)):
        np.testing.assert_array_equal(a, b)
    names = copying_store.listdir(copying_store.get_run_path("m"))
    assert names == ["checkpoint.keras", "ckpt-1.keras"]


def test_a_corrupt_checkpoint_is_a_store_error(local_store):
    est = estimator()
    url = create_initial_checkpoint(est, local_store, "m")
    model = load_checkpoint(local_store, url)
    size = os.path.getsize(local_store.local_path(url))
    with open(local_store.local_path(url), "r+b") as f:  # damage the variables' bytes
        f.seek(size // 2)
        f.write(b"garbage!" * 64)
    with pytest.raises(StoreError, match="is not a (valid )?.keras archive"):
        load_checkpoint(local_store, url)
    with pytest.raises(StoreError, match="is not a (valid )?.keras archive"):
        load_state(model, local_store, url)


class Scale(keras.layers.Layer):
    """A custom layer: loading needs it in custom_objects."""

    def __init__(self, factor=2.0, **kwargs):
        super().__init__(**kwargs)
        self.factor = factor

    def call(self, x):
        return x * self.factor

    def get_config(self):
        return {**super().get_config(), "factor": self.factor}


def test_custom_objects_reach_the_loader(local_store):
    inputs = keras.Input((8,), name="features")
    model = keras.Model(inputs, keras.layers.Dense(1)(Scale(3.0)(inputs)))
    est = SparkEstimator(model, "adam", "mse", custom_objects={"Scale": Scale})
    url = create_initial_checkpoint(est, local_store, "custom")
    loaded = load_checkpoint(local_store, url, est.worker_spec().custom_objects)
    scale = [layer for layer in loaded.layers if isinstance(layer, Scale)]
    assert len(scale) == 1 and scale[0].factor == 3.0


def test_a_truncated_checkpoint_is_a_store_error(local_store):
    url = create_initial_checkpoint(estimator(), local_store, "m")
    path = local_store.local_path(url)
    data = open(path, "rb").read()
    with open(path, "wb") as f:
        f.write(data[: len(data) // 2])
    with pytest.raises(StoreError, match="is not a .keras archive"):
        load_checkpoint(local_store, url)


# ---------------------------------------------------------------------- state files
def test_a_state_file_round_trips_every_model_and_optimizer_variable(local_store):
    est = estimator()
    url = create_initial_checkpoint(est, local_store, "m")
    trained = load_checkpoint(local_store, url)
    fit_a_little(trained, 3)
    state = local_store.get_run_path("m") + "/ckpt-00001-ab.state"
    save_state(trained, local_store, state)
    assert sorted(local_store.listdir(local_store.get_run_path("m"))) == [
        "checkpoint.keras",
        "ckpt-00001-ab.state",
    ]  # written under a temporary name, then renamed

    fresh = load_checkpoint(local_store, url)  # the untrained state
    assert int(fresh.optimizer.iterations.numpy()) == 0
    assert load_state(fresh, local_store, state) is True
    assert int(fresh.optimizer.iterations.numpy()) == 3  # 96 rows / 32
    for a, b in zip(all_variables(fresh), all_variables(trained)):
        np.testing.assert_array_equal(a, b)
    # Training on from either gives the same model (same shuffle: same seed).
    keras.utils.set_random_seed(5)
    fit_a_little(fresh, 4)
    keras.utils.set_random_seed(5)
    fit_a_little(trained, 4)
    for a, b in zip(all_variables(fresh), all_variables(trained)):
        np.testing.assert_array_equal(a, b)


def test_a_state_file_that_does_not_fit_changes_nothing(local_store):
    small = load_checkpoint(local_store, create_initial_checkpoint(estimator(8), local_store, "a"))
    big = load_checkpoint(local_store, create_initial_checkpoint(estimator(16), local_store, "b"))
    state = local_store.get_run_path("b") + "/s.state"
    save_state(big, local_store, state)
    before = all_variables(small)
    assert load_state(small, local_store, state) is False
    for a, b in zip(all_variables(small), before):
        np.testing.assert_array_equal(a, b)


def test_corrupt_truncated_or_misnamed_state_files_are_errors(local_store):
    model = load_checkpoint(local_store, create_initial_checkpoint(estimator(), local_store, "m"))
    state = local_store.get_run_path("m") + "/s.state"
    save_state(model, local_store, state)
    data = local_store.read_bytes(state)
    local_store.write_bytes(state, data[: len(data) - 100])
    with pytest.raises(StoreError, match=r"s\.state is truncated"):
        load_state(model, local_store, state)
    local_store.write_bytes(state, b"PK\x03\x04 not a state file")
    with pytest.raises(StoreError, match="is not a Cerebro state file"):
        load_state(model, local_store, state)
    with pytest.raises(StoreError, match="does not exist"):
        load_state(model, local_store, local_store.get_run_path("m") + "/missing.state")
    with pytest.raises(CerebroValueError, match=r"must end with '\.state', got '.*s\.keras'"):
        save_state(model, local_store, local_store.get_run_path("m") + "/s.keras")
