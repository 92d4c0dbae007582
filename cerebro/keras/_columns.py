"""Which data column feeds which model input, and which label column which model output.

The driver checks this before any Spark job (:meth:`SparkEstimator.validate`) and every worker
applies the same rules to its shard, so both sides agree on the mapping and give the same error.
Nothing here imports Keras: a model is only inspected through its attributes.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from cerebro.exceptions import CerebroValueError, ColumnError

logger = logging.getLogger(__name__)

Shape = tuple[int | None, ...]


@dataclass(frozen=True)
class ModelIO:
    """A model's named inputs and outputs with their per-sample shapes (batch axis dropped).

    ``inputs_as_dict`` / ``outputs_as_dict`` say whether the model was built with dicts and so
    must be fed dicts even when it has a single input or output.
    """

    input_shapes: dict[str, Shape]
    input_dtypes: dict[str, str]
    output_shapes: dict[str, Shape]
    inputs_as_dict: bool
    outputs_as_dict: bool


@dataclass(frozen=True)
class ColumnMapping:
    """``inputs``: input name -> feature column; ``outputs``: output name -> label column."""

    inputs: dict[str, str]
    outputs: dict[str, str]
    io: ModelIO | None


def _per_sample_shape(tensor: Any) -> Shape:
    shape = tuple(tensor.shape)
    return tuple(None if d is None else int(d) for d in shape[1:])


def _named_tensors(struct: Any, flat: list[Any], names: Sequence[str]) -> tuple[dict, bool]:
    if isinstance(struct, Mapping):
        return dict(struct), True
    return dict(zip(names, flat)), False


def model_io(model: Any) -> ModelIO | None:
    """The named inputs and outputs of a functional or Sequential model; None when unknown.

    A subclassed model (or a Sequential model without an ``Input``) has no symbolic inputs, so
    its input and output names and shapes cannot be checked ahead of training.
    """
    try:
        flat_in, flat_out = list(model.inputs), list(model.outputs)
        struct_in, struct_out = model.input, model.output
    except (AttributeError, ValueError):
        return None
    if not flat_in or not flat_out:
        return None
    out_names = getattr(model, "output_names", None) or [t.name for t in flat_out]
    inputs, in_dict = _named_tensors(struct_in, flat_in, [t.name for t in flat_in])
    outputs, out_dict = _named_tensors(struct_out, flat_out, out_names)
    return ModelIO(
        input_shapes={k: _per_sample_shape(t) for k, t in inputs.items()},
        input_dtypes={k: str(getattr(t, "dtype", "float32")) for k, t in inputs.items()},
        output_shapes={k: _per_sample_shape(t) for k, t in outputs.items()},
        inputs_as_dict=in_dict,
        outputs_as_dict=out_dict,
    )


def _match(kind: str, names: list[str], columns: list[str], what: str) -> dict[str, str]:
    if len(names) == 1 and len(columns) == 1:
        return {names[0]: columns[0]}
    missing = [n for n in names if n not in columns]
    if missing:
        raise CerebroValueError(
            f"the model has {len(names)} {kind}s named {names} and there are {len(columns)} "
            f"{what} columns {columns}: with several {kind}s (or several columns) every {kind} "
            f"must be named like a {what} column, but {missing} match none; rename the "
            f"{kind}s (keras.Input(name=...) / the output layer's name) or the columns"
        )
    return {n: n for n in names}


def _shapes_compatible(expected: Shape, actual: Shape) -> bool:
    return len(expected) == len(actual) and all(
        e is None or e == a for e, a in zip(expected, actual)
    )


def _check_input_shape(name: str, column: str, expected: Shape, col_shape: Shape) -> None:
    if col_shape == () and expected in ((), (1,)):
        return
    if not _shapes_compatible(expected, col_shape):
        raise CerebroValueError(
            f"model input {name!r} expects samples of shape {list(expected)} but feature "
            f"column {column!r} holds shape {list(col_shape)} (a scalar column fits an input "
            "of shape () or (1,)); change the input shape or add a keras.layers.Reshape"
        )


def _check_output_shape(name: str, column: str, produced: Shape, col_shape: Shape) -> None:
    if col_shape == () and len(produced) <= 1:
        return  # a scalar label: a regression/binary output of shape () or (1,), or class ids
    if not _shapes_compatible(produced, col_shape):
        raise CerebroValueError(
            f"model output {name!r} produces samples of shape {list(produced)} but label "
            f"column {column!r} holds shape {list(col_shape)}; they must match (a scalar label "
            "also fits an output of shape (1,) or, for class ids, (num_classes,))"
        )


def match_columns(
    model: Any,
    feature_columns: Sequence[str],
    label_columns: Sequence[str],
    column_shapes: Mapping[str, Sequence[int]] | None,
) -> ColumnMapping:
    """Map feature columns to the model's inputs and label columns to its outputs.

    A single input takes the single feature column whatever their names; otherwise inputs and
    columns are matched by name. Outputs and label columns follow the same rule, and their
    counts must be equal. With ``column_shapes`` (per-sample shapes, ``[]`` for a scalar) the
    shapes are checked too.

    Raises:
        CerebroValueError: names, counts or shapes do not fit.
        ColumnError: a column has no shape in ``column_shapes``.
    """
    features, labels = list(feature_columns), list(label_columns)
    if column_shapes is not None:  # a misspelt column first: it also breaks the matching below
        for columns, kind in ((features, "feature"), (labels, "label")):
            missing = [c for c in columns if c not in column_shapes]
            if missing:
                from cerebro.storage.dataset import suggest_column

                hints = "".join(suggest_column(c, column_shapes) for c in missing)
                raise ColumnError(
                    f"{kind} column(s) {missing} are not in the data{hints}, which has columns "
                    f"{sorted(column_shapes)}"
                )
    io = model_io(model)
    if io is None:
        if len(features) != 1 or len(labels) != 1:
            raise CerebroValueError(
                "the model has no symbolic inputs (a subclassed model, or a Sequential model "
                "without keras.Input), so it can only take one feature column and one label "
                f"column, got feature_columns={features} and label_columns={labels}; build it "
                "with the functional API to map several columns by name"
            )
        logger.debug("model has no symbolic inputs: names and shapes are not checked")
        return ColumnMapping(inputs={"": features[0]}, outputs={"": labels[0]}, io=None)

    if len(io.output_shapes) != len(labels):
        raise CerebroValueError(
            f"the model has {len(io.output_shapes)} output(s) {list(io.output_shapes)} but "
            f"{len(labels)} label column(s) {labels} were given; there must be one label column "
            "per output"
        )
    inputs = _match("input", list(io.input_shapes), features, "feature")
    outputs = _match("output", list(io.output_shapes), labels, "label")

    if column_shapes is not None:
        for name, col in inputs.items():
            shape = tuple(int(d) for d in column_shapes[col])
            _check_input_shape(name, col, io.input_shapes[name], shape)
        for name, col in outputs.items():
            shape = tuple(int(d) for d in column_shapes[col])
            _check_output_shape(name, col, io.output_shapes[name], shape)
    return ColumnMapping(inputs=inputs, outputs=outputs, io=io)
