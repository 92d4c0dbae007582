"""GridSearch, RandomSearch and TPESearch: model selection over a search space with MOP.

A search turns configurations from a suggester into models (through the user's
``estimator_gen_fn``), hands them to the backend as a :class:`~cerebro.backend.TrainingJob`,
and collects their histories into a :class:`~cerebro.tune.result.ModelSelectionResult`.
Everything about the user's input is checked before any Spark job starts.
"""

from __future__ import annotations

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


class _SearchJob:
    """The TrainingJob a search hands the backend: models from a suggester, told results."""

    def __init__(self, search: ModelSelection, suggester: Any, parallelism: int | None) -> None:
        self.search = search
        self.suggester = suggester
        self.parallelism = parallelism
        self.trials: dict[str, Any] = {}
        self.results: dict[str, TrainedModel] = {}
        self.pending: list[ModelRequest] = []
        self._count = 0

    def take_first(self) -> ModelRequest:
        """Build and check the first model before anything runs (fails fast on user errors)."""
        req = self._next_request()
        if req is None:
            raise CerebroValueError("search_space yields no configuration to train")
        self.pending.append(req)
        return req

    def _next_request(self) -> ModelRequest | None:
        suggestion = self.suggester.suggest()
        if suggestion is None:
            return None
        trial_id, params = suggestion
        model_id = f"{self.search.experiment_name}-{self._count:03d}"
        self._count += 1
        estimator = self.search.make_estimator(params)
        self.trials[model_id] = trial_id
        return ModelRequest(model_id, estimator, dict(params), self.search.num_epochs)

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
        state = self.search.store.read_json(self.search.store.get_run_state_path(model_id))
        model = TrainedModel(
            model_id=model_id,
            params=state["params"],
            status=status,
            history=state["history"],
            epochs=state["epochs_done"],
            train_seconds=state["train_seconds"],
            checkpoint_path=self.search.store.get_checkpoint_path(model_id),
            logs_path=self.search.store.get_logs_path(model_id),
            error=error,
        )
        self.results[model_id] = model
        value = model.final(self.search.metric_key) if status != "failed" else None
        self.suggester.report(self.trials[model_id], value)


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
        seed: makes configurations, the data split and the schedule reproducible.
        verbose: 0 silent, 1 progress bar and a summary.
        stopper: an early-stopping policy (default: none).
        experiment_name: names the models (``<experiment_name>-000``...); default from the time.
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

            validate_model_id(experiment_name)
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
        self.experiment_name = experiment_name or time.strftime("exp-%Y%m%d-%H%M%S")
        self.metric_key = ""

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

    def fit(self, df: Any) -> ModelSelectionResult:
        """Prepare ``df`` in the store (skipped when already there) and run the search."""
        if self.feature_columns is None or self.label_columns is None:
            raise CerebroValueError(
                "feature_columns and label_columns are needed to prepare a DataFrame, got "
                f"feature_columns={self.feature_columns!r}, label_columns={self.label_columns!r}"
            )
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
        from cerebro.tune.metrics import resolve_metric

        meta = load_metadata(self.store)
        self.feature_columns = self.feature_columns or list(meta.feature_columns)
        self.label_columns = self.label_columns or list(meta.label_columns)
        self._column_shapes = meta.column_shapes()
        has_validation = meta.split_rows("val") > 0

        # Build the first model and resolve the metric before any Spark job starts.
        probe_suggester = self._make_suggester("min")
        probe = _SearchJob(self, probe_suggester, None).take_first()
        key, mode = resolve_metric(
            self.evaluation_metric, self.mode, _compiled_metric_names(probe.estimator)
        )
        if not has_validation:
            key = "train_" + key.removeprefix("val_")
        self.metric_key, self.resolved_mode = key, mode
        self.stopper.resolve_mode(mode)

        job = _SearchJob(
            self,
            self._make_suggester(mode),
            self._parallelism(),
        )
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
            custom_objects=probe.estimator.custom_objects,
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


class GridSearch(ModelSelection):
    """Train every combination of the ``hp_choice`` values in ``search_space``."""

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
