"""ModelSelectionResult: what a search returns."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

    from cerebro.storage import Store


@dataclass
class TrainedModel:
    """One model of a search: its hyperparameters, history and where its state is."""

    model_id: str
    params: dict[str, Any]
    status: str
    history: dict[str, list[float]] = field(default_factory=dict)
    epochs: int = 0
    train_seconds: float = 0.0
    checkpoint_path: str = ""
    logs_path: str = ""
    error: str | None = None

    def final(self, key: str) -> float | None:
        """The last value of history ``key`` (None if never recorded)."""
        values = self.history.get(key) or []
        return values[-1] if values else None

    def best(self, key: str, mode: str) -> float | None:
        """The best value of history ``key`` under ``mode`` (None if never recorded)."""
        values = self.history.get(key) or []
        if not values:
            return None
        return min(values) if mode == "min" else max(values)


class ModelSelectionResult:
    """The outcome of a model search: every model's history and the best model.

    Models are ranked by the final value of ``metric_key`` (what the saved checkpoint holds);
    failed models and models without that metric rank last.
    """

    def __init__(
        self,
        models: list[TrainedModel],
        *,
        metric_key: str,
        mode: str,
        store: Store,
        feature_columns: list[str],
        label_columns: list[str],
        experiment_name: str,
        custom_objects: dict[str, Any] | None = None,
        safe_mode: bool = True,
    ) -> None:
        self.models = {m.model_id: m for m in models}
        self.metric_key = metric_key
        self.mode = mode
        self.store = store
        self.feature_columns = list(feature_columns)
        self.label_columns = list(label_columns)
        self.experiment_name = experiment_name
        self.custom_objects = custom_objects
        self.safe_mode = safe_mode

    def _ranked(self) -> list[TrainedModel]:
        sign = 1.0 if self.mode == "min" else -1.0

        def key(m: TrainedModel) -> tuple[int, float]:
            value = m.final(self.metric_key)
            if m.status == "failed" or value is None or value != value:  # NaN ranks last
                return (1, 0.0)
            return (0, sign * value)

        return sorted(self.models.values(), key=key)

    @property
    def best_model_id(self) -> str:
        """Id of the best model."""
        if not self.models:
            raise ValueError("the search trained no model")
        return self._ranked()[0].model_id

    def get_best_model(self) -> Any:
        """The best model as a Spark ML Transformer (:class:`cerebro.keras.SparkModel`)."""
        return self.get_model(self.best_model_id)

    def get_model(self, model_id: str) -> Any:
        """Any model of the search as a :class:`cerebro.keras.SparkModel`."""
        from cerebro.keras.model import SparkModel

        m = self.models[model_id]
        return SparkModel.from_checkpoint(
            self.store,
            m.checkpoint_path,
            feature_columns=self.feature_columns,
            label_columns=self.label_columns,
            custom_objects=self.custom_objects,
            safe_mode=self.safe_mode,
            model_id=model_id,
        )

    def get_all_models(self) -> dict[str, Any]:
        """Every model that trained at least one epoch, by id, as SparkModels."""
        return {i: self.get_model(i) for i, m in self.models.items() if m.epochs > 0}

    def get_history(self) -> dict[str, list[float]]:
        """The best model's metrics per epoch (``train_*`` and ``val_*``)."""
        return self.models[self.best_model_id].history

    def get_all_model_history(self) -> dict[str, dict[str, list[float]]]:
        """Every model's metrics per epoch, by model id."""
        return {i: m.history for i, m in self.models.items()}

    def keras(self) -> Any:
        """The best model as a plain Keras model."""
        return self.get_best_model().keras()

    def leaderboard(self) -> pd.DataFrame:
        """One row per model, best first: id, hyperparameters, final and best metric, epochs,
        training time, status and where its TensorBoard logs are."""
        import pandas as pd

        rows = []
        for rank, m in enumerate(self._ranked(), start=1):
            rows.append(
                {
                    "rank": rank,
                    "model_id": m.model_id,
                    **{f"param_{k}": v for k, v in m.params.items()},
                    f"final_{self.metric_key}": m.final(self.metric_key),
                    f"best_{self.metric_key}": m.best(self.metric_key, self.mode),
                    "epochs": m.epochs,
                    "train_seconds": round(m.train_seconds, 2),
                    "status": m.status,
                    "logs": m.logs_path,
                }
            )
        return pd.DataFrame(rows).set_index("rank")

    def __repr__(self) -> str:
        return (
            f"ModelSelectionResult({len(self.models)} models, best={self.best_model_id!r} "
            f"by {self.metric_key} ({self.mode}))"
        )
