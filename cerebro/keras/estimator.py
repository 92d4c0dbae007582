"""SparkEstimator: a Keras model and how to train it, as returned by ``estimator_gen_fn``.

Following scikit-learn's estimator contract, an estimator is plain data until training:
``__init__`` stores its arguments unchanged, :meth:`~SparkEstimator.get_params` and
:meth:`~SparkEstimator.set_params` read and change them, and nothing is checked or built until
the driver calls :meth:`~SparkEstimator.validate` before it starts any Spark job.

The model, optimizer, loss and metrics travel to the workers inside the model's ``.keras``
checkpoint (see :func:`cerebro.keras.create_initial_checkpoint`); everything else a worker
needs travels as a small picklable :class:`WorkerSpec` (:meth:`SparkEstimator.worker_spec`).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from cerebro.exceptions import CerebroTypeError, CerebroValueError
from cerebro.keras._columns import match_columns, model_io

logger = logging.getLogger(__name__)

__all__ = ["SparkEstimator", "WorkerSpec"]

# Metric names that Keras resolves only at compile time, from the loss and the output shape.
_COMPILE_TIME_METRICS = frozenset({"accuracy", "acc"})
#: Train steps per compiled call when the estimator leaves it to Cerebro and has no callbacks
#: (benchmarks/: 64 was the fastest of 1, 16, 64 and 256 for the benchmark's MLPs).
DEFAULT_STEPS_PER_EXECUTION = 64


@dataclass(frozen=True, eq=False)
class WorkerSpec:
    """What a worker needs besides the checkpoint to train one model (picklable).

    Attributes:
        batch_size: rows per gradient step.
        custom_objects: passed to ``keras.saving.load_model`` when a worker builds the model.
        callbacks: Keras callbacks handed to every ``fit`` (each hop is one epoch of ``fit`` on
            one partition, with ``initial_epoch`` set to the real epoch).
        transformation_fn: ``dict of arrays -> dict of arrays`` applied once to each shard.
        transform_key: a digest of the pickled ``transformation_fn``; workers key their cache of
            transformed shards by it, so models that share a function share the result.
        safe_mode: load checkpoints with Keras' safe mode (see :class:`SparkEstimator`).
    """

    batch_size: int
    custom_objects: dict[str, Any] | None = None
    callbacks: tuple[Any, ...] = ()
    transformation_fn: Callable[[dict[str, Any]], dict[str, Any]] | None = None
    transform_key: str | None = None
    safe_mode: bool = True


class SparkEstimator:
    """A Keras model with its optimizer, loss and training settings.

    Args:
        model: a ``keras.Model`` (functional or Sequential; a subclassed model works with one
            feature and one label column). It is compiled when its first checkpoint is made.
        optimizer: a ``keras.optimizers.Optimizer`` instance, or a name Keras knows ("adam").
        loss: a Keras loss (name, function or ``keras.losses.Loss``), or a list / dict of them
            (keyed by output name) for several outputs.
        metrics: Keras metrics as for ``Model.compile`` (a list, or a dict keyed by output).
        batch_size: rows per gradient step, >= 1.
        loss_weights: a list or dict (by output name) weighting the losses of several outputs.
        custom_objects: custom layers, losses or metrics needed to load the model from its
            ``.keras`` file, as for ``keras.saving.load_model``.
        callbacks: Keras callbacks passed to every ``fit`` on the workers.
        transformation_fn: optional ``dict of numpy arrays -> dict of numpy arrays`` applied once
            to each worker's shard after loading. It may change values, shapes and dtypes and add
            columns, but must return every feature and label column.
        safe_mode: workers load checkpoints with Keras' safe mode, which refuses to deserialise
            code (``Lambda`` layers). Pass False only for models with such layers whose store
            you trust.
        steps_per_execution: gradient steps per call into TensorFlow's compiled train function
            (Keras' ``compile`` argument). For small models Python's per-step overhead rivals
            the step itself: 64 steps per call train an MLP 2-3x faster, with the same
            weights, but Keras callbacks then see batch ends only every N steps. None (the
            default) means 64 without callbacks and 1 with them.
    """

    _PARAM_NAMES = (
        "model",
        "optimizer",
        "loss",
        "metrics",
        "batch_size",
        "loss_weights",
        "custom_objects",
        "callbacks",
        "transformation_fn",
        "safe_mode",
        "steps_per_execution",
    )

    def __init__(
        self,
        model: Any,
        optimizer: Any,
        loss: Any,
        *,
        metrics: Any = None,
        batch_size: int = 32,
        loss_weights: Any = None,
        custom_objects: dict[str, Any] | None = None,
        callbacks: list[Any] | None = None,
        transformation_fn: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
        safe_mode: bool = True,
        steps_per_execution: int | None = None,
    ) -> None:
        self.model = model
        self.optimizer = optimizer
        self.loss = loss
        self.metrics = metrics
        self.batch_size = batch_size
        self.loss_weights = loss_weights
        self.custom_objects = custom_objects
        self.callbacks = callbacks
        self.transformation_fn = transformation_fn
        self.safe_mode = safe_mode
        self.steps_per_execution = steps_per_execution

    # ------------------------------------------------------------------ sklearn contract
    def get_params(self, deep: bool = True) -> dict[str, Any]:
        """The constructor arguments by name (``deep`` is accepted for scikit-learn parity)."""
        return {name: getattr(self, name) for name in self._PARAM_NAMES}

    def set_params(self, **params: Any) -> SparkEstimator:
        """Change constructor arguments by name and return ``self``.

        Raises:
            CerebroValueError: a name is not a constructor argument.
        """
        unknown = sorted(set(params) - set(self._PARAM_NAMES))
        if unknown:
            raise CerebroValueError(
                f"set_params got unknown parameter(s) {unknown}; valid parameters are "
                f"{list(self._PARAM_NAMES)}"
            )
        for name, value in params.items():
            setattr(self, name, value)
        return self

    def __repr__(self) -> str:
        model_name = getattr(self.model, "name", type(self.model).__name__)
        opt = self.optimizer if isinstance(self.optimizer, str) else type(self.optimizer).__name__
        return (
            f"SparkEstimator(model={model_name!r}, optimizer={opt!r}, loss={self.loss!r}, "
            f"batch_size={self.batch_size!r})"
        )

    # ------------------------------------------------------------------ driver side
    def validate(
        self,
        feature_columns: Sequence[str],
        label_columns: Sequence[str],
        column_shapes: Mapping[str, Sequence[int]] | None,
    ) -> None:
        """Check the settings against the prepared data; called before any Spark job starts.

        Args:
            feature_columns: the columns the model reads.
            label_columns: the columns the model predicts, one per output.
            column_shapes: per-sample shape of each column from the data's metadata (``[]``
                for a scalar, ``[n]`` for an array or vector); None before the data is
                prepared. With a ``transformation_fn`` (or None) the shapes are checked on the
                workers instead, after the transformation.

        Raises:
            CerebroTypeError: an argument has the wrong type (e.g. model is not a keras.Model).
            CerebroValueError: a bad value, or columns that do not fit the model's inputs and
                outputs (names, counts, shapes).
            ColumnError: a column is missing from ``column_shapes``.
        """
        import keras

        features = _column_list(feature_columns, "feature_columns")
        labels = _column_list(label_columns, "label_columns")
        overlap = sorted(set(features) & set(labels))
        if overlap:
            raise CerebroValueError(
                f"columns {overlap} are both feature and label columns; a column can be only one"
            )
        if not isinstance(self.model, keras.Model):
            raise CerebroTypeError(
                f"model must be a keras.Model, got {type(self.model).__module__}."
                f"{type(self.model).__qualname__}"
            )
        _check_optimizer(self.optimizer, keras)
        if (
            isinstance(self.batch_size, bool)
            or not isinstance(self.batch_size, int)
            or self.batch_size < 1
        ):
            raise CerebroValueError(f"batch_size must be an int >= 1, got {self.batch_size!r}")
        if self.custom_objects is not None and not (
            isinstance(self.custom_objects, Mapping)
            and all(isinstance(k, str) for k in self.custom_objects)
        ):
            raise CerebroTypeError(
                "custom_objects must be a dict of name -> class or function, got "
                f"{self.custom_objects!r}"
            )
        if self.callbacks is not None:
            if not isinstance(self.callbacks, (list, tuple)):
                raise CerebroTypeError(
                    f"callbacks must be a list of keras.callbacks.Callback, got "
                    f"{type(self.callbacks).__name__}"
                )
            bad = [c for c in self.callbacks if not isinstance(c, keras.callbacks.Callback)]
            if bad:
                raise CerebroTypeError(
                    f"callbacks must be keras.callbacks.Callback instances, got {bad!r}"
                )
        if self.steps_per_execution is not None and (
            isinstance(self.steps_per_execution, bool)
            or not isinstance(self.steps_per_execution, int)
            or self.steps_per_execution < 1
        ):
            raise CerebroValueError(
                "steps_per_execution must be an int >= 1 or None, got "
                f"{self.steps_per_execution!r}"
            )
        if not isinstance(self.safe_mode, bool):
            raise CerebroTypeError(f"safe_mode must be True or False, got {self.safe_mode!r}")
        if self.transformation_fn is not None and not callable(self.transformation_fn):
            raise CerebroTypeError(
                "transformation_fn must be a callable (dict of arrays -> dict of arrays) or "
                f"None, got {type(self.transformation_fn).__name__}"
            )

        io = model_io(self.model)
        output_names = list(io.output_shapes) if io is not None else None
        _check_loss(self.loss, output_names, keras)
        _check_per_output("metrics", self.metrics, output_names, allow_list_of_any=True)
        _check_metric_names(self.metrics, keras, self.custom_objects or {})
        _check_per_output("loss_weights", self.loss_weights, output_names, numbers=True)

        shapes = (
            None
            if self.transformation_fn is not None or column_shapes is None
            else dict(column_shapes)
        )
        if shapes is not None:
            for col, shape in shapes.items():
                if not isinstance(shape, (list, tuple)) or not all(
                    isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape
                ):
                    raise CerebroValueError(
                        f"column_shapes[{col!r}] must be a list of non-negative ints ([] for a "
                        f"scalar), got {shape!r}"
                    )
        mapping = match_columns(self.model, features, labels, shapes)
        unused = sorted(set(features) - set(mapping.inputs.values()))
        if unused:
            logger.warning("feature columns %s feed no model input and are ignored", unused)

    def worker_spec(self) -> WorkerSpec:
        """The settings a worker needs besides the checkpoint, as a picklable object.

        Raises:
            CerebroTypeError: ``transformation_fn`` cannot be pickled with cloudpickle.
        """
        key = None
        if self.transformation_fn is not None:
            import cloudpickle

            try:
                blob = cloudpickle.dumps(self.transformation_fn)
            except Exception as e:
                raise CerebroTypeError(
                    "transformation_fn must be picklable with cloudpickle to reach the workers: "
                    f"{type(e).__name__}: {e}"
                ) from e
            key = hashlib.sha256(blob).hexdigest()[:20]
        return WorkerSpec(
            batch_size=self.batch_size,
            custom_objects=dict(self.custom_objects) if self.custom_objects else None,
            callbacks=tuple(self.callbacks or ()),
            transformation_fn=self.transformation_fn,
            transform_key=key,
            safe_mode=bool(self.safe_mode),
        )

    def compile_kwargs(self) -> dict[str, Any]:
        """The arguments of ``keras.Model.compile`` this estimator stands for."""
        kwargs: dict[str, Any] = {"optimizer": self.optimizer, "loss": self.loss}
        if self.metrics is not None:
            kwargs["metrics"] = self.metrics
        if self.loss_weights is not None:
            kwargs["loss_weights"] = self.loss_weights
        kwargs["steps_per_execution"] = self.effective_steps_per_execution()
        return kwargs

    def effective_steps_per_execution(self) -> int:
        """``steps_per_execution``, or the default it stands for when None (see the class)."""
        if self.steps_per_execution is not None:
            return self.steps_per_execution
        return 1 if self.callbacks else DEFAULT_STEPS_PER_EXECUTION


# ---------------------------------------------------------------------- checks
def _column_list(columns: Any, arg: str) -> list[str]:
    if isinstance(columns, str) or not isinstance(columns, Sequence):
        raise CerebroTypeError(f"{arg} must be a list of column names, got {columns!r}")
    cols = list(columns)
    if not cols:
        raise CerebroValueError(f"{arg} must name at least one column, got []")
    bad = [c for c in cols if not isinstance(c, str) or not c]
    if bad:
        raise CerebroTypeError(f"{arg} must hold non-empty strings, got {bad!r}")
    dups = sorted({c for c in cols if cols.count(c) > 1})
    if dups:
        raise CerebroValueError(f"{arg} must not repeat a column, got {dups} more than once")
    return cols


def _check_optimizer(optimizer: Any, keras: Any) -> None:
    if isinstance(optimizer, keras.optimizers.Optimizer):
        return
    if isinstance(optimizer, str):
        try:
            keras.optimizers.get(optimizer)
        except ValueError as e:
            raise CerebroValueError(
                f"optimizer {optimizer!r} is not an optimizer Keras knows; pass an instance "
                "such as keras.optimizers.Adam(1e-3)"
            ) from e
        return
    raise CerebroTypeError(
        "optimizer must be a keras.optimizers.Optimizer instance or its name, got "
        f"{type(optimizer).__module__}.{type(optimizer).__qualname__}"
    )


def _check_loss(loss: Any, output_names: list[str] | None, keras: Any) -> None:
    if loss is None:
        raise CerebroValueError("loss is required, got None (e.g. loss='mse')")

    def one(value: Any, where: str) -> None:
        if isinstance(value, str):
            try:
                keras.losses.get(value)
            except ValueError as e:
                raise CerebroValueError(f"{where} {value!r} is not a loss Keras knows") from e
        elif not callable(value):
            raise CerebroTypeError(
                f"{where} must be a loss name, function or keras.losses.Loss, got "
                f"{type(value).__name__}"
            )

    if isinstance(loss, (Mapping, list, tuple)):
        _check_per_output("loss", loss, output_names)
        values = loss.items() if isinstance(loss, Mapping) else enumerate(loss)
        for key, value in values:
            one(value, f"loss[{key!r}]")
    else:
        one(loss, "loss")


def _check_per_output(
    arg: str,
    value: Any,
    output_names: list[str] | None,
    *,
    numbers: bool = False,
    allow_list_of_any: bool = False,
) -> None:
    """A per-output setting: a dict keyed by output names or a list with one entry per output."""
    if value is None:
        return
    if isinstance(value, Mapping):
        if output_names is not None:
            unknown = sorted(set(value) - set(output_names))
            if unknown:
                raise CerebroValueError(
                    f"{arg} has keys {unknown} that are not model outputs; the outputs are "
                    f"{output_names}"
                )
        items = list(value.values())
    elif isinstance(value, (list, tuple)):
        if not allow_list_of_any and output_names is not None and len(value) != len(output_names):
            raise CerebroValueError(
                f"{arg} must have one entry per model output ({len(output_names)}: "
                f"{output_names}), got {len(value)}: {value!r}"
            )
        items = list(value)
    else:
        if numbers:
            raise CerebroTypeError(
                f"{arg} must be a list or a dict keyed by output name, got {value!r}"
            )
        if allow_list_of_any:
            raise CerebroTypeError(
                f"{arg} must be a list, or a dict keyed by output name, got {value!r}"
            )
        return
    if numbers:
        bad = [v for v in items if isinstance(v, bool) or not isinstance(v, (int, float))]
        if bad:
            raise CerebroTypeError(f"{arg} must hold numbers, got {bad!r}")


def _check_metric_names(metrics: Any, keras: Any, custom: Mapping[str, Any]) -> None:
    if metrics is None:
        return
    groups = metrics.values() if isinstance(metrics, Mapping) else [metrics]
    for group in groups:
        for m in group if isinstance(group, (list, tuple)) else [group]:
            if isinstance(m, str) and m.lower() not in _COMPILE_TIME_METRICS and m not in custom:
                try:
                    keras.metrics.get(m)
                except ValueError as e:
                    raise CerebroValueError(f"metric {m!r} is not a metric Keras knows") from e
            elif not isinstance(m, str) and m is not None and not callable(m):
                raise CerebroTypeError(
                    f"metrics must be names, functions or keras.metrics.Metric, got {m!r}"
                )
