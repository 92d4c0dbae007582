"""SparkEstimator: the scikit-learn contract, validate() and the worker spec."""

from __future__ import annotations

import pickle
import subprocess
import sys

import cloudpickle
import keras
import numpy as np
import pytest
from keras_helpers import mlp

from cerebro.exceptions import CerebroTypeError, CerebroValueError, ColumnError
from cerebro.keras import SparkEstimator, WorkerSpec
from cerebro.keras.estimator import DEFAULT_STEPS_PER_EXECUTION

SHAPES = {"features": [8], "label": []}


def make_estimator(**overrides):
    kwargs = dict(
        model=mlp(),
        optimizer=keras.optimizers.Adam(1e-3),
        loss="mse",
        metrics=["mae"],
        batch_size=16,
    )
    kwargs.update(overrides)
    return SparkEstimator(**kwargs)


def two_in_two_out():
    a = keras.Input((3,), name="a")
    b = keras.Input((1,), name="b")
    h = keras.layers.Concatenate()([a, b])
    reg = keras.layers.Dense(1, name="price")(h)
    cls = keras.layers.Dense(4, activation="softmax", name="kind")(h)
    return keras.Model([a, b], [reg, cls])


# ---------------------------------------------------------------------- sklearn contract
def test_init_stores_arguments_unchanged_and_validates_nothing():
    model, opt, cbs = mlp(), keras.optimizers.SGD(), [keras.callbacks.History()]
    fn = lambda d: d  # noqa: E731
    est = SparkEstimator(
        model,
        opt,
        "mse",
        metrics=["mae"],
        batch_size=7,
        loss_weights=None,
        custom_objects={"x": int},
        callbacks=cbs,
        transformation_fn=fn,
    )
    params = est.get_params()
    assert params["model"] is model and params["optimizer"] is opt and params["callbacks"] is cbs
    assert params["transformation_fn"] is fn and params["batch_size"] == 7
    assert set(params) == set(SparkEstimator._PARAM_NAMES)
    # Nothing is checked at construction time, even nonsense.
    bad = SparkEstimator("not a model", 3, None, batch_size=-1)
    assert bad.batch_size == -1 and bad.model == "not a model"


def test_set_params_returns_self_and_rejects_unknown_names():
    est = make_estimator()
    assert est.set_params(batch_size=64, loss="mae") is est
    assert est.batch_size == 64 and est.get_params()["loss"] == "mae"
    with pytest.raises(CerebroValueError, match=r"unknown parameter\(s\) \['batchsize'\]"):
        est.set_params(batchsize=3)


def test_clone_from_params_gives_an_equivalent_estimator():
    est = make_estimator(batch_size=5)
    clone = type(est)(**est.get_params())
    assert clone is not est
    assert clone.get_params() == est.get_params()
    clone.set_params(batch_size=9)
    assert est.batch_size == 5  # changing the clone leaves the original alone
    assert "batch_size=5" in repr(est)


# ---------------------------------------------------------------------- validate(): happy paths
def test_validate_accepts_a_matching_model():
    make_estimator().validate(["features"], ["label"], SHAPES)


def test_single_input_needs_no_matching_name():
    est = make_estimator(model=mlp(input_name="x", output_name="y"))
    est.validate(["features"], ["label"], SHAPES)


@pytest.mark.parametrize("input_shape", [(1,), ()])
def test_scalar_column_fits_input_of_shape_1_or_empty(input_shape):
    inp = keras.Input(input_shape, name="f")
    h = keras.layers.Reshape((1,))(inp) if input_shape == () else inp
    model = keras.Model(inp, keras.layers.Dense(1)(h))
    make_estimator(model=model).validate(["f"], ["label"], {"f": [], "label": []})


def test_multi_input_multi_output_maps_by_name():
    est = make_estimator(
        model=two_in_two_out(),
        loss={"price": "mse", "kind": "sparse_categorical_crossentropy"},
        metrics={"price": ["mae"], "kind": ["accuracy"]},
        loss_weights={"price": 1.0, "kind": 0.5},
    )
    est.validate(["b", "a"], ["kind", "price"], {"a": [3], "b": [], "price": [], "kind": []})


def test_optimizer_may_be_a_name():
    make_estimator(optimizer="adam").validate(["features"], ["label"], SHAPES)


def test_subclassed_model_with_one_feature_and_one_label():
    class Sub(keras.Model):
        def __init__(self):
            super().__init__()
            self.d = keras.layers.Dense(1)

        def call(self, x):
            return self.d(x)

    est = make_estimator(model=Sub())
    est.validate(["features"], ["label"], SHAPES)
    with pytest.raises(CerebroValueError, match="no symbolic inputs"):
        est.validate(["features", "other"], ["label"], {**SHAPES, "other": []})


# ---------------------------------------------------------------------- validate(): errors
@pytest.mark.parametrize(
    "overrides, exc, pattern",
    [
        ({"model": "a string"}, CerebroTypeError, "model must be a keras.Model, got builtins.str"),
        ({"optimizer": 0.01}, CerebroTypeError, "optimizer must be a keras.optimizers.Optimizer"),
        ({"optimizer": "adamw2"}, CerebroValueError, "optimizer 'adamw2' is not an optimizer"),
        ({"batch_size": 0}, CerebroValueError, r"batch_size must be an int >= 1, got 0"),
        ({"batch_size": "32"}, CerebroValueError, r"batch_size must be an int >= 1, got '32'"),
        ({"batch_size": True}, CerebroValueError, r"batch_size must be an int >= 1, got True"),
        ({"loss": None}, CerebroValueError, "loss is required"),
        ({"loss": "msee"}, CerebroValueError, "loss 'msee' is not a loss Keras knows"),
        ({"loss": 3}, CerebroTypeError, "loss must be a loss name"),
        ({"metrics": ["maee"]}, CerebroValueError, "metric 'maee' is not a metric Keras knows"),
        ({"metrics": "mae"}, CerebroTypeError, "metrics must be a list"),
        ({"callbacks": [print]}, CerebroTypeError, "keras.callbacks.Callback instances"),
        ({"callbacks": keras.callbacks.History()}, CerebroTypeError, "callbacks must be a list"),
        ({"transformation_fn": 5}, CerebroTypeError, "transformation_fn must be a callable"),
        ({"custom_objects": ["x"]}, CerebroTypeError, "custom_objects must be a dict"),
    ],
)
def test_bad_settings_are_rejected(overrides, exc, pattern):
    with pytest.raises(exc, match=pattern):
        make_estimator(**overrides).validate(["features"], ["label"], SHAPES)


def test_mismatched_input_names_list_inputs_and_columns():
    est = make_estimator(model=two_in_two_out(), loss="mse")
    with pytest.raises(CerebroValueError) as e:
        est.validate(["x", "y"], ["price", "kind"], {"x": [3], "y": [], "price": [], "kind": []})
    msg = str(e.value)
    assert "['a', 'b']" in msg and "['x', 'y']" in msg and "match none" in msg


def test_input_shape_mismatch():
    with pytest.raises(CerebroValueError, match=r"expects samples of shape \[8\].*shape \[5\]"):
        make_estimator().validate(["features"], ["label"], {"features": [5], "label": []})
    with pytest.raises(CerebroValueError, match=r"expects samples of shape \[8\].*shape \[\]"):
        make_estimator().validate(["features"], ["label"], {"features": [], "label": []})


def test_number_of_outputs_must_match_labels():
    with pytest.raises(CerebroValueError, match=r"1 output\(s\).*2 label column\(s\)"):
        make_estimator().validate(["features"], ["label", "l2"], {**SHAPES, "l2": []})


def test_multi_output_names_must_match_labels():
    est = make_estimator(model=two_in_two_out(), loss="mse")
    shapes = {"a": [3], "b": [], "p": [], "k": []}
    with pytest.raises(CerebroValueError, match=r"\['price', 'kind'\].*\['p', 'k'\]"):
        est.validate(["a", "b"], ["p", "k"], shapes)


def test_output_shape_must_fit_label_shape():
    with pytest.raises(CerebroValueError, match=r"produces samples of shape \[1\].*shape \[2\]"):
        make_estimator().validate(["features"], ["label"], {"features": [8], "label": [2]})


def test_per_output_settings_must_name_outputs():
    est = make_estimator(model=two_in_two_out(), loss={"price": "mse", "typo": "mse"})
    shapes = {"a": [3], "b": [], "price": [], "kind": []}
    with pytest.raises(CerebroValueError, match=r"loss has keys \['typo'\].*\['price', 'kind'\]"):
        est.validate(["a", "b"], ["price", "kind"], shapes)
    est = make_estimator(model=two_in_two_out(), loss="mse", loss_weights=[1.0])
    with pytest.raises(CerebroValueError, match="loss_weights must have one entry per model"):
        est.validate(["a", "b"], ["price", "kind"], shapes)


@pytest.mark.parametrize(
    "features, labels, shapes, exc, pattern",
    [
        ([], ["label"], SHAPES, CerebroValueError, "feature_columns must name at least one"),
        ("features", ["label"], SHAPES, CerebroTypeError, "feature_columns must be a list"),
        (["features"], ["features"], SHAPES, CerebroValueError, "both feature and label"),
        (["features", "features"], ["label"], SHAPES, CerebroValueError, "must not repeat"),
        (["features"], ["label"], {"features": [8]}, ColumnError, r"\['label'\] are not in"),
        (
            ["features"],
            ["label"],
            {"features": [8], "label": [-1]},
            CerebroValueError,
            "non-negative ints",
        ),
    ],
)
def test_bad_columns(features, labels, shapes, exc, pattern):
    with pytest.raises(exc, match=pattern):
        make_estimator().validate(features, labels, shapes)


def test_shapes_are_left_to_the_workers_with_a_transformation():
    # The transformation may reshape columns, so only names are checked on the driver.
    est = make_estimator(transformation_fn=lambda d: d)
    est.validate(["features"], ["label"], {"features": [3], "label": []})


# ---------------------------------------------------------------------- worker spec
def test_worker_spec_is_small_picklable_and_keyed_by_the_transformation():
    factor = 2.0

    def double(d):
        return {k: v * factor for k, v in d.items()}

    est = make_estimator(transformation_fn=double, callbacks=[keras.callbacks.History()])
    spec = est.worker_spec()
    assert isinstance(spec, WorkerSpec) and spec.batch_size == 16
    blob = cloudpickle.dumps(spec)
    assert len(blob) < 20_000  # no model inside
    back = pickle.loads(blob)
    assert back.transform_key == spec.transform_key is not None
    assert back.transformation_fn({"a": np.ones(2)})["a"].tolist() == [2.0, 2.0]
    assert est.worker_spec().transform_key == spec.transform_key  # stable
    other = make_estimator(transformation_fn=lambda d: d).worker_spec()
    assert other.transform_key != spec.transform_key
    assert make_estimator().worker_spec().transform_key is None


def test_compile_kwargs_reflect_the_settings():
    est = make_estimator(loss_weights=[2.0])
    kw = est.compile_kwargs()
    assert kw["loss"] == "mse" and kw["metrics"] == ["mae"] and kw["loss_weights"] == [2.0]
    assert "loss_weights" not in make_estimator().compile_kwargs()
    # Cerebro's default: 64 steps per compiled call, unless callbacks need every batch end.
    assert kw["steps_per_execution"] == DEFAULT_STEPS_PER_EXECUTION == 64
    with_callback = make_estimator(callbacks=[keras.callbacks.TerminateOnNaN()])
    assert with_callback.compile_kwargs()["steps_per_execution"] == 1
    assert make_estimator(steps_per_execution=5).compile_kwargs()["steps_per_execution"] == 5


def test_importing_cerebro_keras_starts_no_tensorflow():
    code = (
        "import sys, cerebro, cerebro.keras\n"
        "from cerebro.keras import SparkEstimator, KerasTrainer, aggregate_metrics\n"
        "heavy = [m for m in ('tensorflow', 'keras', 'tensorboard', 'pyspark')\n"
        "         if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr


def test_extra_feature_columns_are_allowed_with_a_warning(caplog):
    est = make_estimator()  # one input named "features"
    with caplog.at_level("WARNING", logger="cerebro.keras.estimator"):
        est.validate(["features", "extra"], ["label"], {**SHAPES, "extra": []})
    assert "['extra'] feed no model input" in caplog.text
