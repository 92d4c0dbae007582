"""GridSearch, RandomSearch and TPESearch: model selection over a search space with MOP.

A search turns configurations from a suggester into models (through the user's
``estimator_gen_fn``), hands them to the backend as a :class:`~cerebro.backend.TrainingJob`,
and collects their histories into a :class:`~cerebro.tune.result.ModelSelectionResult`.
Everything about the user's input is checked before any Spark job starts.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable
from typing import Any

from cerebro.backend._base import Backend, ModelRequest
from cerebro.exceptions import CerebroError, CerebroTypeError, CerebroValueError
from cerebro.storage import Store
from cerebro.tune.result import ModelSelectionResult, TrainedModel

logger = logging.getLogger(__name__)


def _check_columns(name: str, value: Any) -> list[str] | None:
    if value is None:
        return None
    if isinstance(value, str):
        value = [value]
    if (
        not isinstance(value, list | tuple)
        or not value
        or not all(isinstance(c, str) and c for c in value)
    ):
        raise CerebroTypeError(f"{name} must be a non-empty list of column names, got {value!r}")
    return list(value)


def _compiled_metric_names(estimator: Any) -> list[str]:
    names = ["loss"]
    for m in estimator.metrics or []:
        names.append(m if isinstance(m, str) else getattr(m, "name", type(m).__name__))
    return names


_FINAL = ("finished", "stopped", "failed")


def _trained_model(store: Store, model_id: str, state: dict[str, Any]) -> TrainedModel:
    return TrainedModel(
        model_id=model_id,
        params=state["params"],
        status=state["status"],
        history=state["history"],
        epochs=state["epochs_done"],
        train_seconds=state["train_seconds"],
        checkpoint_path=store.get_checkpoint_path(model_id),
        logs_path=store.get_logs_path(model_id),
        error=state.get("error"),
    )


class _SearchJob:
    """The TrainingJob a search hands the backend: models from a suggester, told results.

    It keeps the experiment record (``store.get_experiment_path(name)``) current: the search's
    configuration, the suggester's state and which model is which trial, written atomically
    after every suggestion and every result, so that an interrupted search can resume.
    """

    def __init__(
        self,
        search: ModelSelection,
        suggester: Any,
        parallelism: int | None,
        *,
        record: bool = True,
    ) -> None:
        self.search = search
        self.store = search.store
        self.suggester = suggester
        self.parallelism = parallelism
        self.record = record
        self.trials: dict[str, int] = {}
        self.results: dict[str, TrainedModel] = {}
        self.pending: list[ModelRequest] = []
        self.created = time.time()

    def take_first(self) -> ModelRequest:
        """Build and check the first model before anything runs (fails fast on user errors)."""
        req = self._next_request()
        if req is None:
            raise CerebroValueError("search_space yields no configuration to train")
        self.pending.append(req)
        return req

    def _model_id(self, index: int) -> str:
        return f"{self.search.experiment_name}-{index:03d}"

    def _next_request(self) -> ModelRequest | None:
        suggestion = self.suggester.suggest()
        if suggestion is None:
            return None
        trial_id, params = suggestion
        model_id = self._model_id(len(self.trials))
        self.trials[model_id] = trial_id
        self.save()
        try:
            estimator = self.search.make_estimator(params)
        except CerebroError as e:
            if not self.results and not self.pending and len(self.trials) == 1:
                raise  # the first configuration: fail fast, nothing has run yet
            logger.warning("model %s cannot be built, marked failed: %s", model_id, e)
            self.results[model_id] = TrainedModel(
                model_id, dict(params), "failed", error=f"{type(e).__name__}: {e}"
            )
            self.suggester.report(trial_id, None)
            self.save()
            return self._next_request()
        return ModelRequest(
            model_id,
            estimator,
            dict(params),
            self.search.num_epochs,
            may_stop_early=self.search.may_stop_early,
        )

    def next_models(self, num_running: int) -> list[ModelRequest]:
        out, self.pending = self.pending, []
        limit = self.parallelism or float("inf")
        while num_running + len(out) < limit:
            req = self._next_request()
            if req is None:
                break
            out.append(req)
        return out

    def on_epoch_end(self, model_id: str, epoch: int, metrics: dict[str, float]) -> bool:
        value = metrics.get(self.search.metric_key)
        return self.search.stopper.on_epoch_end(model_id, epoch, value)

    def on_model_end(self, model_id: str, status: str, error: str | None) -> None:
        state = self.store.read_json(self.store.get_run_state_path(model_id))
        self._finish(model_id, state)
        self.save()

    def _finish(self, model_id: str, state: dict[str, Any]) -> None:
        model = _trained_model(self.store, model_id, state)
        self.results[model_id] = model
        trial_id = self.trials[model_id]
        if trial_id in self.suggester.pending:
            value = model.final(self.search.metric_key) if model.status != "failed" else None
            self.suggester.report(trial_id, value)

    # ------------------------------------------------------------------ the record
    def save(self) -> None:
        if not self.record:
            return
        self.store.write_json(
            self.store.get_experiment_path(self.search.experiment_name),
            {
                "name": self.search.experiment_name,
                "config": self.search.config(),
                "suggester": self.suggester.state_dict(),
                "models": self.trials,
                "created": self.created,
                "updated": time.time(),
            },
        )

    def restore(self, record: dict[str, Any]) -> None:
        """Continue the search of ``record``: finished models are kept as they are, unfinished
        ones continue from their last committed checkpoint, the suggester where it was."""
        self.suggester.load_state_dict(record["suggester"])
        self.created = record.get("created", self.created)
        self.trials = {m: int(t) for m, t in record["models"].items()}
        for model_id, trial_id in self.trials.items():
            state_path = self.store.get_run_state_path(model_id)
            state = self.store.read_json(state_path) if self.store.exists(state_path) else None
            if state is not None and state["status"] in _FINAL:
                self._finish(model_id, state)
                continue
            params = (
                state["params"] if state is not None else self.suggester.pending_params(trial_id)
            )
            estimator = self.search.make_estimator(params)
            self.pending.append(
                ModelRequest(
                    model_id,
                    estimator,
                    dict(params),
                    self.search.num_epochs,
                    state,
                    may_stop_early=self.search.may_stop_early,
                )
            )
        # Early stopping policies compare epochs and models: let them hear the past again.
        for model_id in self.trials:
            state_path = self.store.get_run_state_path(model_id)
            if self.store.exists(state_path):
                values = self.store.read_json(state_path)["history"].get(self.search.metric_key)
                for epoch, value in enumerate(values or []):
                    self.search.stopper.on_epoch_end(model_id, epoch, value)
        logger.info(
            "resuming experiment %s: %d models done, %d to continue",
            self.search.experiment_name,
            len(self.results),
            len(self.pending),
        )
        self.save()


class ModelSelection:
    """Base of the searches: the arguments they share and ``fit``.

    Args:
        backend: where to train (e.g. :class:`~cerebro.backend.SparkBackend`).
        store: where data, checkpoints and logs go.
        estimator_gen_fn: ``params -> SparkEstimator``; called once per configuration.
        search_space: ``{name: hp_*(...)}``.
        num_epochs: epochs per model (>= 1).
        evaluation_metric: the compiled metric that ranks models (``val_`` implied).
        mode: ``"min"`` or ``"max"``; needed only for metrics whose direction is not known.
        validation: fraction of rows (0, 1) or a boolean column naming validation rows.
        feature_columns, label_columns: the DataFrame columns to train on.
        seed: makes the configurations reproducible (the data split has its own seed in
            ``prepare_data``, the schedule the backend's ``seed``).
        verbose: 0 silent, 1 a summary of the result in the log (the progress bar is the
            backend's ``verbose``).
        stopper: an early-stopping policy (default: none).
        experiment_name: names the search in the store and its models
            (``<experiment_name>-000``...); default ``exp-<hash of the configuration>``, so
            running the same search again finds its earlier run.
        resume: continue the experiment of the same name where it stopped (finished models are
            kept, unfinished ones continue from their last checkpoint, the searcher continues
            its sequence); starts afresh if there is none.
        overwrite: delete an earlier experiment of the same name (its runs and logs) first.
    """

    def __init__(
        self,
        backend: Backend,
        store: Store,
        estimator_gen_fn: Callable[[dict[str, Any]], Any],
        search_space: dict[str, Any],
        num_epochs: int,
        *,
        evaluation_metric: str = "loss",
        mode: str | None = None,
        validation: float | str = 0.25,
        feature_columns: list[str] | None = None,
        label_columns: list[str] | None = None,
        seed: int | None = None,
        verbose: int = 1,
        stopper: Any = None,
        experiment_name: str | None = None,
        resume: bool = False,
        overwrite: bool = False,
    ) -> None:
        from cerebro.tune.space import validate_search_space
        from cerebro.tune.stopping import BaseStopper, NoStopping

        if not isinstance(backend, Backend):
            raise CerebroTypeError(f"backend must be a cerebro Backend, got {backend!r}")
        if not isinstance(store, Store):
            raise CerebroTypeError(f"store must be a cerebro.storage.Store, got {store!r}")
        if not callable(estimator_gen_fn):
            raise CerebroTypeError(
                f"estimator_gen_fn must be a callable params -> SparkEstimator, "
                f"got {estimator_gen_fn!r}"
            )
        if isinstance(num_epochs, bool) or not isinstance(num_epochs, int) or num_epochs < 1:
            raise CerebroValueError(f"num_epochs must be an int >= 1, got {num_epochs!r}")
        if not isinstance(evaluation_metric, str) or not evaluation_metric:
            raise CerebroValueError(
                f"evaluation_metric must be a metric name, got {evaluation_metric!r}"
            )
        if mode not in (None, "min", "max"):
            raise CerebroValueError(f"mode must be 'min', 'max' or None, got {mode!r}")
        if stopper is not None and not isinstance(stopper, BaseStopper):
            raise CerebroTypeError(
                f"stopper must be a cerebro.tune stopping policy, got {stopper!r}"
            )
        if experiment_name is not None:
            from cerebro.storage._base import validate_model_id

            validate_model_id(experiment_name, "experiment_name")
        for name, flag in (("resume", resume), ("overwrite", overwrite)):
            if not isinstance(flag, bool):
                raise CerebroTypeError(f"{name} must be True or False, got {flag!r}")
        if resume and overwrite:
            raise CerebroValueError("resume and overwrite exclude each other, got both True")
        self.backend = backend
        self.store = store
        self.estimator_gen_fn = estimator_gen_fn
        self.search_space = validate_search_space(search_space)
        self.num_epochs = num_epochs
        self.evaluation_metric = evaluation_metric
        self.mode = mode
        self.validation = validation
        self.feature_columns = _check_columns("feature_columns", feature_columns)
        self.label_columns = _check_columns("label_columns", label_columns)
        self.seed = seed
        self.verbose = verbose
        self.stopper = stopper if stopper is not None else NoStopping()
        #: Whether models may end before num_epochs (the backend then keeps a full archive
        #: of every epoch, else only of the last).
        self.may_stop_early = not isinstance(self.stopper, NoStopping)
        self._column_shapes: dict[str, Any] | None = None
        self._experiment_name = experiment_name
        self.resume = resume
        self.overwrite = overwrite
        self.metric_key = ""

    @property
    def experiment_name(self) -> str:
        """The experiment's name: given, or derived from the search's configuration."""
        if self._experiment_name:
            return self._experiment_name
        digest = hashlib.sha256(json.dumps(self.config(), sort_keys=True).encode()).hexdigest()
        return f"exp-{digest[:10]}"

    def config(self) -> dict[str, Any]:
        """What defines this search; a resumed experiment must have the same."""
        return {
            "search": type(self).__name__,
            "search_space": {k: repr(v) for k, v in self.search_space.items()},
            "num_epochs": self.num_epochs,
            "evaluation_metric": self.evaluation_metric,
            "mode": self.mode,
            "seed": self.seed,
            "feature_columns": self.feature_columns,
            "label_columns": self.label_columns,
            **self._extra_config(),
        }

    def _extra_config(self) -> dict[str, Any]:
        return {}

    # ------------------------------------------------------------------ subclass hooks
    def _make_suggester(self, direction: str) -> Any:
        raise NotImplementedError

    def _parallelism(self) -> int | None:
        return None  # all configurations at once

    # ------------------------------------------------------------------ fitting
    def make_estimator(self, params: dict[str, Any]) -> Any:
        """Call ``estimator_gen_fn`` and check that it returned a usable SparkEstimator."""
        from cerebro.keras import SparkEstimator

        try:
            estimator = self.estimator_gen_fn(dict(params))
        except CerebroError:
            raise
        except Exception as e:
            raise CerebroValueError(
                f"estimator_gen_fn raised {type(e).__name__} for params {params}: {e}"
            ) from e
        if not isinstance(estimator, SparkEstimator):
            raise CerebroTypeError(
                f"estimator_gen_fn must return a cerebro.keras.SparkEstimator, got "
                f"{type(estimator).__name__} for params {params}"
            )
        estimator.validate(self.feature_columns, self.label_columns, self._column_shapes)
        return estimator

    def _preflight(self) -> tuple[Any, str, str]:
        """Build the first model and resolve the metric: user errors surface before any Spark
        job. Returns the first estimator, the history key ranking models and its direction."""
        from cerebro.tune.metrics import resolve_metric

        probe = _SearchJob(self, self._make_suggester("min"), None, record=False).take_first()
        key, mode = resolve_metric(
            self.evaluation_metric, self.mode, _compiled_metric_names(probe.estimator)
        )
        return probe.estimator, key, mode

    def fit(self, df: Any) -> ModelSelectionResult:
        """Prepare ``df`` in the store (skipped when already there) and run the search."""
        if self.feature_columns is None or self.label_columns is None:
            raise CerebroValueError(
                "feature_columns and label_columns are needed to prepare a DataFrame, got "
                f"feature_columns={self.feature_columns!r}, label_columns={self.label_columns!r}"
            )
        self._preflight()  # column shapes are checked once the data is prepared
        self.backend.prepare_data(
            self.store,
            df,
            validation=self.validation,
            feature_columns=self.feature_columns,
            label_columns=self.label_columns,
        )
        return self.fit_on_prepared_data()

    def fit_on_prepared_data(self) -> ModelSelectionResult:
        """Run the search on data already prepared in the store."""
        from cerebro.storage.dataset import load_metadata

        meta = load_metadata(self.store)
        self.feature_columns = self.feature_columns or list(meta.feature_columns)
        self.label_columns = self.label_columns or list(meta.label_columns)
        self._column_shapes = meta.column_shapes()
        has_validation = meta.split_rows("val") > 0

        probe_estimator, key, mode = self._preflight()
        if not has_validation:
            key = "train_" + key.removeprefix("val_")
        self.metric_key, self.resolved_mode = key, mode
        self.stopper.resolve_mode(mode)

        job = _SearchJob(self, self._make_suggester(mode), self._parallelism())
        self._open_experiment(job)
        logger.info(
            "experiment %s: %s on %d workers, ranking by %s (%s)",
            self.experiment_name,
            type(self).__name__,
            self.backend.num_workers,
            key,
            mode,
        )
        self.backend.run(
            self.store,
            job,
            feature_columns=self.feature_columns,
            label_columns=self.label_columns,
            has_validation=has_validation,
        )
        result = ModelSelectionResult(
            list(job.results.values()),
            metric_key=key,
            mode=mode,
            store=self.store,
            feature_columns=self.feature_columns,
            label_columns=self.label_columns,
            experiment_name=self.experiment_name,
            custom_objects=probe_estimator.custom_objects,
            safe_mode=probe_estimator.safe_mode,
        )
        if self.verbose and result.models:
            best = result.models[result.best_model_id]
            logger.info(
                "experiment %s done: best model %s with %s=%s (params %s)",
                self.experiment_name,
                best.model_id,
                key,
                best.final(key),
                best.params,
            )
        return result

    def _open_experiment(self, job: _SearchJob) -> None:
        """Start, resume or refuse the experiment, by what the store already holds."""
        path = self.store.get_experiment_path(self.experiment_name)
        record = self.store.read_json(path) if self.store.exists(path) else None
        if record is None:
            logger.info("experiment %s starts", self.experiment_name)
            return
        if self.overwrite:
            logger.info("experiment %s: deleting the earlier run (overwrite=True)", path)
            for model_id in record.get("models", {}):
                self.store.delete(self.store.get_run_path(model_id))
                self.store.delete(self.store.get_logs_path(model_id))
            self.store.delete(path)
            return
        if not self.resume:
            raise CerebroValueError(
                f"experiment_name {self.experiment_name!r} already exists in the store "
                f"({len(record.get('models', {}))} models at {path}): pass resume=True to "
                "continue it, overwrite=True to start it over, or another experiment_name"
            )
        if record.get("config") != self.config():
            old, new = record.get("config", {}), self.config()
            diff = {
                k: (old.get(k), new.get(k))
                for k in set(old) | set(new)
                if old.get(k) != new.get(k)
            }
            raise CerebroValueError(
                f"cannot resume experiment {self.experiment_name!r}: it was run with another "
                f"configuration (stored, now): {diff}"
            )
        job.restore(record)


class GridSearch(ModelSelection):
    """Train every combination of the ``hp_choice`` values in ``search_space``."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._make_suggester("min")  # a grid needs hp_choice everywhere: refuse others now

    def _make_suggester(self, direction: str) -> Any:
        from cerebro.tune.suggesters import GridSuggester

        return GridSuggester(self.search_space, seed=self.seed)


class RandomSearch(ModelSelection):
    """Train ``num_models`` configurations drawn at random from ``search_space``."""

    def __init__(self, *args: Any, num_models: int, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if isinstance(num_models, bool) or not isinstance(num_models, int) or num_models < 1:
            raise CerebroValueError(f"num_models must be an int >= 1, got {num_models!r}")
        self.num_models = num_models

    def _extra_config(self) -> dict[str, Any]:
        return {"num_models": self.num_models}

    def _make_suggester(self, direction: str) -> Any:
        from cerebro.tune.suggesters import RandomSuggester

        return RandomSuggester(self.search_space, num_models=self.num_models, seed=self.seed)


class TPESearch(ModelSelection):
    """Bayesian optimisation (Optuna's TPE): ``parallelism`` models train at once and each
    finished model's result informs the next configurations."""

    def __init__(self, *args: Any, num_models: int, parallelism: int = 2, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for name, value in (("num_models", num_models), ("parallelism", parallelism)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise CerebroValueError(f"{name} must be an int >= 1, got {value!r}")
        self.num_models = num_models
        self.parallelism = parallelism

    def _extra_config(self) -> dict[str, Any]:
        return {"num_models": self.num_models, "parallelism": self.parallelism}

    def _make_suggester(self, direction: str) -> Any:
        from cerebro.tune.suggesters import TPESuggester

        return TPESuggester(
            self.search_space,
            num_models=self.num_models,
            parallelism=self.parallelism,
            seed=self.seed,
            direction=direction,
        )

    def _parallelism(self) -> int | None:
        return self.parallelism
