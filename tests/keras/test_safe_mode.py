"""Workers load checkpoints with Keras' safe mode unless the estimator opts out."""

from __future__ import annotations

import numpy as np
import pytest
from keras_helpers import regression_data

from cerebro.exceptions import StoreError
from cerebro.keras import KerasTrainer, SparkEstimator, create_initial_checkpoint


def _lambda_estimator(safe_mode: bool) -> SparkEstimator:
    import keras

    inputs = keras.Input(shape=(8,), name="features")
    scaled = keras.layers.Lambda(lambda t: t * 0.5)(inputs)  # code inside the file
    outputs = keras.layers.Dense(1, name="label")(scaled)
    return SparkEstimator(
        keras.Model(inputs, outputs), keras.optimizers.SGD(0.01), "mse", safe_mode=safe_mode
    )


def _train(store, safe_mode: bool) -> dict:
    est = _lambda_estimator(safe_mode)
    url = create_initial_checkpoint(est, store, "lam")
    data = regression_data(64)
    trainer = KerasTrainer(store, data, {}, ["features"], ["label"])
    out = store.get_run_path("lam") + "/next.keras"
    return trainer.train("lam", est.worker_spec(), url, out, 0, 0, seed=1)


def test_safe_mode_refuses_code_in_a_checkpoint(local_store):
    with pytest.raises(StoreError, match="(?i)lambda|safe"):
        _train(local_store, safe_mode=True)


def test_safe_mode_false_trains_a_lambda_model(local_store):
    result = _train(local_store, safe_mode=False)
    assert result["rows"] == 64 and np.isfinite(result["metrics"]["loss"])


def test_safe_mode_must_be_a_bool():
    from cerebro.exceptions import CerebroTypeError

    est = _lambda_estimator(safe_mode="no")
    with pytest.raises(CerebroTypeError, match="safe_mode"):
        est.validate(["features"], ["label"], {"features": [8], "label": []})
