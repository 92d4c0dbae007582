"""The public search API end to end: GridSearch, RandomSearch and TPESearch on real Spark.

Every search trains real Keras models with Model Hopper Parallelism on ``local[2]`` Spark, on a
small synthetic task (a linear rule over 6 features) prepared once for the whole module; each
search uses its own ``experiment_name`` in that store. The tests read what a user can read: the
result object, the runs' ``state.json`` files and, for TPE, the Optuna study behind the search.
"""

from __future__ import annotations

import math
import statistics

import numpy as np
import pytest

from cerebro.backend import SparkBackend
from cerebro.exceptions import CerebroError, CerebroTypeError, CerebroValueError
from cerebro.storage import LocalStore
from cerebro.tune import (
    GridSearch,
    PatienceStopping,
    RandomSearch,
    RandomSuggester,
    TPESearch,
    hp_choice,
    hp_loguniform,
    hp_uniform,
)

W = 2  # workers, hence data partitions
FEATURES = 6
ROWS = 2400
WEIGHTS = np.array([1.0, -2.0, 0.5, 0.0, 1.5, -1.0])
# Two keys with the same distribution: drawn from one shared stream they would be equal.
RANDOM_SPACE = {"lr": hp_loguniform(0.01, 0.1), "l2": hp_loguniform(0.01, 0.1)}
TPE_SPACE = {"lr": hp_loguniform(0.005, 0.1), "units": hp_choice([4, 8])}


def make_df(spark, rows: int, seed: int = 0):
    """``features`` (array of 6 doubles) and ``label`` (0/1, a linear rule of the features)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, FEATURES))
    y = (x @ WEIGHTS > 0).astype("int64")
    data = [(x[i].tolist(), int(y[i])) for i in range(rows)]
    return spark.createDataFrame(data, "features array<double>, label long")


def estimator_gen_fn(params):
    """A one-hidden-layer MLP; ``lr`` is required, ``units``/``l2``/``optimizer`` optional."""
    import keras

    from cerebro.keras import SparkEstimator

    if params.get("optimizer") == "sgd":
        optimizer = keras.optimizers.SGD(params["lr"])
    else:
        optimizer = keras.optimizers.Adam(params["lr"])
    regularizer = keras.regularizers.L2(params["l2"]) if "l2" in params else None
    inputs = keras.Input(shape=(FEATURES,), name="features")
    hidden = keras.layers.Dense(
        params.get("units", 8), activation="relu", kernel_regularizer=regularizer
    )(inputs)
    outputs = keras.layers.Dense(1, activation="sigmoid", name="label")(hidden)
    return SparkEstimator(
        model=keras.Model(inputs, outputs),
        optimizer=optimizer,
        loss="binary_crossentropy",
        metrics=["accuracy"],
        batch_size=64,
    )


def _jobs_started(spark) -> int:
    """How many Spark jobs this SparkContext has started so far.

    Read through py4j from the DAG scheduler: PySpark's status tracker lists only jobs outside
    job groups, and the workers' barrier job runs in one.
    """
    return int(spark.sparkContext._jsc.sc().dagScheduler().numTotalJobs())


def _state(store, model_id):
    return store.read_json(store.get_run_state_path(model_id))


@pytest.fixture(scope="module")
def prepared(spark, tmp_path_factory):
    """A SparkBackend and a LocalStore holding the prepared synthetic data (75/25 split)."""
    store = LocalStore(str(tmp_path_factory.mktemp("search_e2e") / "store"))
    backend = SparkBackend(spark.sparkContext, num_workers=W, verbose=0)
    backend.prepare_data(
        store,
        make_df(spark, ROWS),
        validation=0.25,
        feature_columns=["features"],
        label_columns=["label"],
    )
    return backend, store


@pytest.fixture(scope="module")
def random_runs(prepared):
    """RandomSearch(num_models=3, seed=7) twice: ranked by accuracy, then by loss."""
    backend, store = prepared
    results = {}
    for metric in ("accuracy", "loss"):
        results[metric] = RandomSearch(
            backend,
            store,
            estimator_gen_fn,
            RANDOM_SPACE,
            num_epochs=2,
            num_models=3,
            seed=7,
            evaluation_metric=metric,
            verbose=0,
            experiment_name=f"random-{metric}",
        ).fit_on_prepared_data()
    return results


# ---------------------------------------------------------------------- random search
def _params_in_order(result):
    return [result.models[i].params for i in sorted(result.models)]


@pytest.mark.slow
def test_random_search_with_the_same_seed_trains_the_same_configurations(random_runs):
    first, second = random_runs["accuracy"], random_runs["loss"]
    assert sorted(first.models) == [
        "random-accuracy-000",
        "random-accuracy-001",
        "random-accuracy-002",
    ]
    assert sorted(second.models) == ["random-loss-000", "random-loss-001", "random-loss-002"]
    assert _params_in_order(first) == _params_in_order(second)
    # Three different draws, each inside the space's bounds.
    configs = _params_in_order(first)
    assert len({(p["lr"], p["l2"]) for p in configs}) == 3
    for p in configs:
        assert 0.01 <= p["lr"] <= 0.1 and 0.01 <= p["l2"] <= 0.1


@pytest.mark.slow
def test_random_search_draws_each_key_independently(random_runs):
    # The search trains exactly what its suggester draws for the same space and seed...
    expected = RandomSuggester(RANDOM_SPACE, 3, seed=7)
    drawn = [expected.suggest().params for _ in range(3)]
    assert _params_in_order(random_runs["accuracy"]) == drawn
    # ...and two keys of the same distribution never share a stream (the original Cerebro
    # drew every key from one seeded generator: lr == l2 in every configuration).
    assert all(p["lr"] != p["l2"] for p in drawn)
    many = RandomSuggester(RANDOM_SPACE, 400, seed=7)
    params = [many.suggest().params for _ in range(400)]
    log_lr = [math.log(p["lr"]) for p in params]
    log_l2 = [math.log(p["l2"]) for p in params]
    assert abs(statistics.correlation(log_lr, log_l2)) < 0.2
    # A key's draws do not depend on the other keys: lr alone draws the same values.
    alone = RandomSuggester({"lr": RANDOM_SPACE["lr"]}, 400, seed=7)
    assert [alone.suggest().params["lr"] for _ in range(400)] == [p["lr"] for p in params]


# ---------------------------------------------------------------------- metric directions
@pytest.mark.slow
@pytest.mark.parametrize(
    "metric, mode, pick",
    [("accuracy", "max", max), ("loss", "min", min)],
)
def test_best_model_follows_the_metric_direction(random_runs, metric, mode, pick):
    result = random_runs[metric]
    key = f"val_{metric}"
    assert (result.metric_key, result.mode) == (key, mode)
    finals = {i: m.history[key][-1] for i, m in result.models.items()}
    assert finals[result.best_model_id] == pick(finals.values())
    if metric == "loss":  # continuous: the three models really differ, so the pick means something
        assert len(set(finals.values())) == 3
    board = result.leaderboard()
    assert list(board.index) == [1, 2, 3]
    assert board["model_id"].iloc[0] == result.best_model_id
    column = board[f"final_{key}"]
    assert column.is_monotonic_decreasing if mode == "max" else column.is_monotonic_increasing
    assert list(column) == sorted(finals.values(), reverse=mode == "max")
    assert set(board["status"]) == {"finished"} and set(board["epochs"]) == {2}


# ---------------------------------------------------------------------- the result object
@pytest.mark.slow
def test_result_api(spark, random_runs):
    import keras

    from cerebro.keras import SparkModel

    result = random_runs["accuracy"]
    ids = sorted(result.models)

    histories = result.get_all_model_history()
    assert sorted(histories) == ids
    for history in histories.values():
        for key in ("train_loss", "train_accuracy", "val_loss", "val_accuracy"):
            assert len(history[key]) == 2 and all(math.isfinite(v) for v in history[key])
    assert result.get_history() == histories[result.best_model_id]

    models = result.get_all_models()
    assert sorted(models) == ids
    assert all(isinstance(m, SparkModel) and m.model_id == i for i, m in models.items())

    best = result.get_best_model()
    assert isinstance(best, SparkModel) and best.model_id == result.best_model_id
    test_df = make_df(spark, 300, seed=1)
    out = best.transform(test_df)
    assert out.columns == ["features", "label", "label__output"]
    rows = out.collect()
    assert len(rows) == 300
    predicted = np.array([r["label__output"] for r in rows])
    assert ((predicted >= 0) & (predicted <= 1)).all()
    labels = np.array([r["label"] for r in rows])
    accuracy = float(((predicted > 0.5) == labels).mean())
    assert accuracy > 0.7, accuracy  # the task is learnable: the best model beats chance

    model = result.keras()
    assert isinstance(model, keras.Model)
    features = np.array([r["features"] for r in rows], dtype="float32")
    np.testing.assert_allclose(
        model.predict(features, verbose=0).reshape(-1), predicted, rtol=1e-4, atol=1e-5
    )


# ---------------------------------------------------------------------- TPE
class _RecordingTPESearch(TPESearch):
    """A TPESearch that keeps the suggesters it builds; the last one drives the training."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.suggesters = []

    def _make_suggester(self, direction):
        suggester = super()._make_suggester(direction)
        self.suggesters.append(suggester)
        return suggester


@pytest.mark.slow
def test_tpe_search_trains_in_parallel_and_feeds_the_sampler(prepared):
    from optuna.study import StudyDirection
    from optuna.trial import TrialState

    backend, store = prepared
    search = _RecordingTPESearch(
        backend,
        store,
        estimator_gen_fn,
        TPE_SPACE,
        num_epochs=1,
        num_models=4,
        parallelism=2,
        seed=11,
        evaluation_metric="accuracy",
        verbose=0,
        experiment_name="tpe",
    )
    result = search.fit_on_prepared_data()

    ids = [f"tpe-{k:03d}" for k in range(4)]
    assert sorted(result.models) == ids
    assert all(m.status == "finished" and m.epochs == 1 for m in result.models.values())

    # Never more than `parallelism` models between admission and the end, and it was used.
    events = []
    for model_id in ids:
        state = _state(store, model_id)
        events += [(state["started_at"], 1), (state["finished_at"], -1)]
    running, most = 0, 0
    for _, delta in sorted(events):  # at equal times an end (-1) sorts before a start
        running += delta
        most = max(most, running)
    assert most == 2

    # The results reached the Optuna study: one COMPLETE trial per model, with its value.
    suggester = search.suggesters[-1]
    study = suggester.study
    assert study.direction == StudyDirection.MAXIMIZE
    trials = sorted(study.trials, key=lambda t: t.number)
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 4
    for k, trial in enumerate(trials):
        model = result.models[ids[k]]
        assert trial.value == pytest.approx(model.final("val_accuracy"), abs=1e-12)
        assert trial.params["lr"] == model.params["lr"]
        assert TPE_SPACE["units"].options[trial.params["units"]] == model.params["units"]
    assert suggester.results == {k: result.models[ids[k]].final("val_accuracy") for k in range(4)}
    # Each later configuration was asked for only after the earlier results were told.
    for k in range(2, 4):
        told = [t for t in trials if t.datetime_complete <= trials[k].datetime_start]
        assert len(told) >= k - 1, (k, [t.number for t in told])


# ---------------------------------------------------------------------- early stopping
@pytest.mark.slow
def test_patience_stopping_stops_a_model_that_cannot_improve(prepared):
    backend, store = prepared
    result = GridSearch(
        backend,
        store,
        estimator_gen_fn,
        {"lr": hp_choice([0.0, 0.05]), "optimizer": hp_choice(["sgd"])},
        num_epochs=3,
        stopper=PatienceStopping(patience=1, min_delta=1e-4),
        evaluation_metric="loss",
        verbose=0,
        experiment_name="patience",
    ).fit_on_prepared_data()

    frozen = next(m for m in result.models.values() if m.params["lr"] == 0.0)
    # lr=0: epoch 0 sets the best value, epoch 1 cannot beat it, so patience 1 stops it there.
    assert frozen.status == "stopped" and frozen.epochs == 2
    assert len(frozen.history["val_loss"]) == 2
    assert frozen.history["val_loss"][1] == pytest.approx(frozen.history["val_loss"][0], abs=1e-6)
    state = _state(store, frozen.model_id)
    assert state["status"] == "stopped" and state["epochs_done"] == 2
    assert sorted(map(tuple, state["sub_epochs"])) == [(e, p) for e in range(2) for p in range(W)]
    assert store.listdir(store.get_run_path(frozen.model_id)) == ["checkpoint.keras", "state.json"]
    other = next(m for m in result.models.values() if m.params["lr"] != 0.0)
    assert other.status in ("finished", "stopped") and other.epochs >= 2
    board = result.leaderboard().set_index("model_id")
    assert board.loc[frozen.model_id, "status"] == "stopped"
    assert board.loc[frozen.model_id, "epochs"] == 2


# ---------------------------------------------------------------------- a diverging model
@pytest.mark.slow
def test_a_model_whose_loss_becomes_nan_fails_and_the_others_finish(prepared):
    backend, store = prepared
    result = GridSearch(
        backend,
        store,
        estimator_gen_fn,
        {"lr": hp_choice([1e12, 0.05]), "optimizer": hp_choice(["sgd"])},
        num_epochs=2,
        evaluation_metric="loss",
        verbose=0,
        experiment_name="nan",
    ).fit_on_prepared_data()

    diverged = next(m for m in result.models.values() if m.params["lr"] == 1e12)
    healthy = next(m for m in result.models.values() if m.params["lr"] == 0.05)
    assert diverged.status == "failed"
    assert "non-finite loss" in diverged.error
    assert _state(store, diverged.model_id)["status"] == "failed"
    assert healthy.status == "finished" and healthy.epochs == 2
    assert all(math.isfinite(v) for v in healthy.history["val_loss"])
    assert result.best_model_id == healthy.model_id
    board = result.leaderboard()
    assert list(board["model_id"]) == [healthy.model_id, diverged.model_id]
    assert list(board["status"]) == ["finished", "failed"]
    assert diverged.model_id not in result.get_all_models()  # it never finished an epoch


# ---------------------------------------------------------------------- bad input
def _gen_returning_a_keras_model(params):
    return estimator_gen_fn(params).model


def _gen_raising(params):
    return params["lr"] / 0


def _build(cls, space, gen=estimator_gen_fn, **kwargs):
    def build(backend, store):
        args = {
            "num_epochs": 1,
            "verbose": 0,
            "experiment_name": "bad",
            "feature_columns": ["features"],
            "label_columns": ["label"],
            **kwargs,
        }
        return cls(backend, store, gen, space, **args)

    return build


LR = {"lr": hp_choice([0.01])}

CONSTRUCTOR_CASES = [
    pytest.param(
        _build(GridSearch, {"lr": [0.01, 0.1]}),
        CerebroTypeError,
        r"search_space\['lr'\] must be an hp_\* primitive.*hp_choice\(\[0\.01, 0\.1\]\)",
        id="plain-list",
    ),
    pytest.param(
        _build(RandomSearch, {}, num_models=2),
        CerebroValueError,
        r"search_space must hold at least one hyperparameter, got \{\}",
        id="empty-space",
    ),
    pytest.param(
        _build(GridSearch, LR, num_epochs=0),
        CerebroValueError,
        r"num_epochs must be an int >= 1, got 0",
        id="num_epochs=0",
    ),
    pytest.param(
        _build(RandomSearch, LR, num_models=0),
        CerebroValueError,
        r"num_models must be an int >= 1, got 0",
        id="random-num_models=0",
    ),
    pytest.param(
        _build(TPESearch, LR, num_models=0),
        CerebroValueError,
        r"num_models must be an int >= 1, got 0",
        id="tpe-num_models=0",
    ),
    pytest.param(
        _build(TPESearch, LR, num_models=2, parallelism=0),
        CerebroValueError,
        r"parallelism must be an int >= 1, got 0",
        id="parallelism=0",
    ),
    pytest.param(
        _build(GridSearch, LR, mode="up"),
        CerebroValueError,
        r"mode must be 'min', 'max' or None, got 'up'",
        id="mode=up",
    ),
]

FIT_CASES = [
    pytest.param(
        _build(GridSearch, {"lr": hp_uniform(0.01, 0.1)}),
        CerebroTypeError,
        r"grid search needs hp_choice for every hyperparameter, but 'lr' is hp_uniform",
        id="hp_uniform-in-grid",
    ),
    pytest.param(
        _build(GridSearch, LR, evaluation_metric="auc"),
        CerebroValueError,
        r"evaluation_metric 'auc' is not a metric of the compiled model; available: loss, "
        r"accuracy",
        id="metric-not-compiled",
    ),
    pytest.param(
        _build(GridSearch, LR, gen=_gen_returning_a_keras_model),
        CerebroTypeError,
        r"estimator_gen_fn must return a cerebro.keras.SparkEstimator, got Functional for "
        r"params \{'lr': 0.01\}",
        id="gen-returns-keras-model",
    ),
    pytest.param(
        _build(GridSearch, LR, gen=_gen_raising),
        CerebroValueError,
        r"estimator_gen_fn raised ZeroDivisionError for params \{'lr': 0.01\}",
        id="gen-raises",
    ),
]


@pytest.mark.parametrize("build, error, match", CONSTRUCTOR_CASES)
def test_bad_arguments_fail_in_the_constructor(spark, prepared, build, error, match):
    backend, store = prepared
    jobs = _jobs_started(spark)
    with pytest.raises(error, match=match) as info:
        build(backend, store)
    assert isinstance(info.value, CerebroError)
    assert _jobs_started(spark) == jobs


@pytest.mark.parametrize("build, error, match", FIT_CASES)
def test_bad_search_fails_before_training(spark, prepared, build, error, match):
    backend, store = prepared
    jobs = _jobs_started(spark)
    with pytest.raises(error, match=match) as info:
        build(backend, store).fit_on_prepared_data()  # the constructor may refuse it already
    assert isinstance(info.value, CerebroError)
    assert _jobs_started(spark) == jobs
    assert not store.exists(store.get_run_path("bad-000"))


# ---------------------------------------------------------------------- known gaps (failing)
def test_grid_search_refuses_a_non_choice_space_in_the_constructor(prepared):
    """FAILS until GridSearch.__init__ checks its space (today only fit_on_prepared_data does)."""
    backend, store = prepared
    with pytest.raises(CerebroTypeError, match="grid search needs hp_choice"):
        _build(GridSearch, {"lr": hp_uniform(0.01, 0.1)})(backend, store)


@pytest.mark.parametrize("build, error, match", FIT_CASES)
def test_fit_checks_the_search_before_preparing_data(spark, tmp_path, build, error, match):
    """FAILS until fit(df) runs the checks of fit_on_prepared_data before prepare_data.

    Today ``fit`` first materialises the whole DataFrame (Spark jobs, files in the store) and
    only then finds the bad search space, metric or estimator_gen_fn.
    """
    store = LocalStore(str(tmp_path / "store"))
    backend = SparkBackend(spark.sparkContext, num_workers=W, verbose=0)
    df = make_df(spark, 200)
    jobs = _jobs_started(spark)
    with pytest.raises(error, match=match):
        build(backend, store).fit(df)
    assert _jobs_started(spark) == jobs
    assert not store.exists(store.get_train_data_path())
