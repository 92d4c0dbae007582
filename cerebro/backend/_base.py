"""The Backend base class and the contract between a model search and a backend.

A search (``cerebro.tune``) hands the backend a :class:`TrainingJob`. The backend asks the job
for models to start, trains them with Model Hopper Parallelism, and tells the job each model's
metrics after every epoch; the job answers whether the model goes on. The backend knows nothing
of search spaces; the job knows nothing of workers.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from cerebro.storage import Store


@dataclass
class ModelRequest:
    """One model configuration to train.

    Attributes:
        model_id: unique id, also the name of its run and log folders.
        estimator: the ``cerebro.keras.SparkEstimator`` returned by ``estimator_gen_fn``.
        params: the hyperparameters that produced it (logged to TensorBoard's HParams).
        num_epochs: how many epochs to train at most.
        resume_state: the model's committed ``state.json`` when it continues an interrupted
            run (it then starts from the checkpoint that state names), else None.
        may_stop_early: whether the search may stop the model before ``num_epochs`` (then
            every epoch ends with a full ``.keras`` archive, since any epoch may be its last;
            else only the last one does).
    """

    model_id: str
    estimator: Any
    params: dict[str, Any] = field(default_factory=dict)
    num_epochs: int = 1
    resume_state: dict[str, Any] | None = None
    may_stop_early: bool = True


class TrainingJob(Protocol):
    """What a backend needs from a search while it trains."""

    def next_models(self, num_running: int) -> list[ModelRequest]:
        """Models to start now, given how many are training; ``[]`` if none for the moment."""

    def on_epoch_end(self, model_id: str, epoch: int, metrics: dict[str, float]) -> bool:
        """Hear a model's metrics after an epoch (0-based); return False to stop the model."""

    def on_model_end(self, model_id: str, status: str, error: str | None) -> None:
        """Hear that a model is done: ``status`` is finished, stopped or failed."""


class Backend(abc.ABC):
    """Runs data preparation and MOP training on some cluster."""

    @property
    @abc.abstractmethod
    def num_workers(self) -> int:
        """How many workers (and data partitions) training uses."""

    @abc.abstractmethod
    def prepare_data(
        self,
        store: Store,
        df: Any,
        validation: float | str = 0.25,
        feature_columns: list[str] | None = None,
        label_columns: list[str] | None = None,
        **kwargs: Any,
    ) -> Any:
        """Materialise ``df`` into ``store`` as training and validation data."""

    @abc.abstractmethod
    def run(self, store: Store, job: TrainingJob, **kwargs: Any) -> None:
        """Train the models ``job`` hands out until it hands out no more."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release workers and other resources held between runs."""
