"""SparkModel: a trained Keras model as a Spark ML Transformer.

``result.get_best_model().transform(test_df)`` adds one prediction column per model output to
``test_df``. Inference is batched and runs on the executors: the model's ``.keras`` bytes are
broadcast once, each executor Python process builds the model once and keeps it in a small
module-level cache keyed by a digest of those bytes, and a scalar-iterator pandas UDF feeds it
Arrow batches of the feature columns (never single rows, never through the driver). Only the
feature columns travel to Python; every other column stays in the JVM.

A SparkModel is a ``pyspark.ml.Transformer`` with Params (``featureCols``, ``labelCols``,
``outputCols``, ``batchSize``), so it fits into ``Pipeline``/``PipelineModel``, including their
``save``/``load``. :meth:`SparkModel.save` writes a folder through any store::

    <path>/model.keras           the Keras 3 archive (as trained: weights, compile settings)
    <path>/metadata/part-00000   Spark ML metadata (class, uid, params), for PipelineModel.load
    <path>/sparkmodel.json       the column config and the archive's SHA-256, written last

Files loaded from disk are opened with Keras' ``safe_mode=True`` (no Python code from the file
runs) unless the caller passes ``safe_mode=False``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
import threading
import time
import zipfile
from collections import OrderedDict
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from pyspark.ml import Transformer
from pyspark.ml.param import Param, Params, TypeConverters
from pyspark.ml.util import MLReadable, MLReader, MLWritable, MLWriter

from cerebro.backend.spark.prepare import _column_kind, _ref
from cerebro.exceptions import CerebroTypeError, CerebroValueError, ColumnError, StoreError
from cerebro.keras._columns import Shape, _check_input_shape, match_columns
from cerebro.keras.checkpoint import _check_archive, _check_stored_archive, checkpoint_token
from cerebro.keras.estimator import _column_list
from cerebro.storage._base import Store
from cerebro.storage.dataset import check_column_names

if TYPE_CHECKING:
    import keras
    import pandas as pd
    from pyspark.sql import DataFrame

logger = logging.getLogger(__name__)

__all__ = ["SparkModel"]

MODEL_FILE = "model.keras"
CONFIG_FILE = "sparkmodel.json"
METADATA_FILE = "metadata/part-00000"
_FORMAT = "cerebro.keras.SparkModel"
_FORMAT_VERSION = 1
_DEFAULT_BATCH_SIZE = 1024
_OUTPUT_SUFFIX = "__output"
_TMP_COLUMN = "__cerebro_predictions"
#: Models kept built per executor Python process (consecutive transforms of the same model, or
#: a few models compared side by side, reuse them; older ones are dropped).
_MAX_CACHED_MODELS = 2


# ---------------------------------------------------------------------- inference plan
@dataclass(frozen=True)
class _Feed:
    """One model input and the feature column that feeds it."""

    input: str  # model input name ("" for a model without symbolic inputs)
    column: str
    kind: str  # "scalar", "array" or "vector"
    shape: Shape | None  # per-sample input shape; None when the model does not say
    dtype: str | None  # the input's dtype, what the column is cast to


@dataclass(frozen=True)
class _Output:
    """One model output and the column its predictions go to."""

    name: str  # model output name
    column: str
    rank: int  # 0: a double column; k: k nested arrays of doubles


@dataclass(frozen=True)
class _InferenceSpec:
    """Everything an executor needs besides the model bytes (plain, picklable data)."""

    token: str  # digest of the model bytes and load options: the executor cache key
    model_id: str | None
    safe_mode: bool
    custom_objects: dict[str, Any] | None
    batch_size: int
    feeds: tuple[_Feed, ...]
    inputs_as_dict: bool
    outputs: tuple[_Output, ...]  # in the model's output order
    columns: tuple[str, ...]  # output columns in the order of the result struct


@dataclass(frozen=True)
class _Inline:
    """Model bytes shipped inside the task closure where broadcasts are unavailable."""

    value: bytes


# ---------------------------------------------------------------------- executor side
_MODELS: OrderedDict[str, Any] = OrderedDict()
_STATS: dict[str, dict[str, int]] = {}
_LOCK = threading.Lock()


def _executor_model(spec: _InferenceSpec, shipped: Any) -> Any:
    """The built model of ``spec.token``: from this process's cache, else from ``shipped``."""
    with _LOCK:
        model = _MODELS.get(spec.token)
        if model is None:
            started = time.perf_counter()
            model = _model_from_bytes(
                shipped.value,
                custom_objects=spec.custom_objects,
                safe_mode=spec.safe_mode,
                compile=False,
                source=f"the model of SparkModel {spec.model_id or spec.token[:12]}",
            )
            _MODELS[spec.token] = model
            while len(_MODELS) > _MAX_CACHED_MODELS:
                _MODELS.popitem(last=False)
            stats = _STATS.setdefault(spec.token, {"loads": 0, "batches": 0})
            stats["loads"] += 1
            logger.debug(
                "built model %s in process %d in %.2fs",
                spec.token[:12],
                os.getpid(),
                time.perf_counter() - started,
            )
        else:
            _MODELS.move_to_end(spec.token)
        return model


def _executor_stats() -> dict[str, dict[str, int]]:
    """``{token: {"loads": n, "batches": m}}`` of this process (how often the cache missed)."""
    with _LOCK:
        return {k: dict(v) for k, v in _STATS.items()}


def _feature_array(values: pd.Series, feed: _Feed) -> np.ndarray:
    """A feature column's batch as the array the model input takes."""
    if feed.kind == "scalar":
        arr = values.to_numpy()
    else:
        cells = values.to_numpy()
        if values.isna().any():
            raise CerebroValueError(
                f"feature column {feed.column!r} holds null rows; SparkModel cannot predict "
                "them: filter them out or fill them in first"
            )
        lengths = np.fromiter(map(len, cells), dtype=np.int64, count=len(cells))
        if len(cells) and (lengths != lengths[0]).any():
            raise CerebroValueError(
                f"feature column {feed.column!r} holds arrays of different lengths "
                f"{sorted(set(lengths.tolist()))[:5]}; model input {feed.input!r} needs one length"
            )
        # One concatenation is about twice as fast as np.stack over many small arrays.
        width = int(lengths[0]) if len(cells) else 0
        arr = np.concatenate(cells).reshape(len(cells), width) if len(cells) else np.empty((0, 0))
    if feed.shape == (1,) and arr.ndim == 1:
        arr = arr.reshape(-1, 1)
    dtype = _numpy_dtype(feed.dtype)
    if dtype is not None and arr.dtype != dtype:
        arr = arr.astype(dtype)
    if feed.shape is not None:
        _check_input_shape(feed.input, feed.column, feed.shape, tuple(arr.shape[1:]))
    return arr


def _numpy_dtype(name: str | None) -> np.dtype | None:
    """The numpy dtype of a Keras input dtype name; None (no cast) when numpy lacks it."""
    try:
        return np.dtype(name) if name is not None else None
    except TypeError:
        return None


def _predict_arrays(
    model: Any, spec: _InferenceSpec, series: Sequence[pd.Series]
) -> list[np.ndarray]:
    """Predictions for one batch, one array per model output (in the model's order)."""
    xs = {feed.input: _feature_array(s, feed) for feed, s in zip(spec.feeds, series)}
    rows = len(series[0])
    names = [o.name for o in spec.outputs]
    chunks: list[list[np.ndarray]] = []
    for start in range(0, rows, spec.batch_size):
        part = {k: v[start : start + spec.batch_size] for k, v in xs.items()}
        x = part if spec.inputs_as_dict else next(iter(part.values()))
        chunks.append(_as_output_list(model.predict_on_batch(x), names))
    return [np.concatenate([c[i] for c in chunks]) for i in range(len(names))]


def _as_output_list(pred: Any, names: Sequence[str]) -> list[np.ndarray]:
    if isinstance(pred, Mapping):
        return [np.asarray(pred[n]) for n in names]
    if isinstance(pred, (list, tuple)):
        return [np.asarray(p) for p in pred]
    return [np.asarray(pred)]


def _prediction_frame(
    model: Any, spec: _InferenceSpec, series: Sequence[pd.Series]
) -> pd.DataFrame:
    """One batch's predictions as a pandas frame of the result struct's columns."""
    import pandas as pd

    rows = len(series[0])
    if rows == 0:
        return pd.DataFrame({c: pd.Series([], dtype=object) for c in spec.columns})
    data: dict[str, Any] = {}
    for out, arr in zip(spec.outputs, _predict_arrays(model, spec, series)):
        arr = np.asarray(arr, dtype=np.float64)
        if out.rank == 0:
            data[out.column] = arr.reshape(rows)
        elif out.rank == 1:
            data[out.column] = list(arr.reshape(rows, -1))
        else:
            data[out.column] = arr.tolist()
    return pd.DataFrame(data, columns=list(spec.columns))


def _predict_batches(spec: _InferenceSpec, shipped: Any, batches: Any) -> Iterator[pd.DataFrame]:
    """Predictions for each Arrow batch of one task, with the process's cached model."""
    import pandas as pd

    model = _executor_model(spec, shipped)
    for batch in batches:
        series = (batch,) if isinstance(batch, pd.Series) else tuple(batch)
        frame = _prediction_frame(model, spec, series)
        with _LOCK:
            _STATS.setdefault(spec.token, {"loads": 0, "batches": 0})["batches"] += 1
        yield frame


def _udf_function(spec: _InferenceSpec, shipped: Any) -> Any:
    """The scalar-iterator pandas UDF body.

    It refers to nothing but its arguments and module-level functions: cloudpickle ships
    those by reference, so the executors use this module's model cache, not a copy of it.
    """
    import pandas as pd

    def predict(batches: Any) -> Any:
        yield from _predict_batches(spec, shipped, batches)

    # pandas_udf infers the UDF type from real (not string) annotations.
    predict.__annotations__ = {
        "batches": Iterator[tuple[pd.Series, ...]],
        "return": Iterator[pd.DataFrame],
    }
    return predict


# ---------------------------------------------------------------------- model bytes
def _model_from_bytes(
    data: bytes,
    *,
    custom_objects: Mapping[str, Any] | None,
    safe_mode: bool,
    compile: bool,
    source: str,
) -> keras.Model:
    """Build a model from the bytes of a ``.keras`` archive.

    Raises:
        StoreError: the bytes are not a (valid) archive, or Keras cannot rebuild the model.
        CerebroValueError: the model holds Python code and ``safe_mode`` is True.
    """
    import keras

    with tempfile.TemporaryDirectory(prefix="cerebro-model-") as tmp:
        path = os.path.join(tmp, MODEL_FILE)
        with open(path, "wb") as f:
            f.write(data)
        _check_archive(path, source)
        try:
            return keras.saving.load_model(
                path,
                custom_objects=dict(custom_objects) if custom_objects else None,
                compile=compile,
                safe_mode=safe_mode,
            )
        except (zipfile.BadZipFile, KeyError) as e:  # KeyError: a zip without Keras' members
            raise StoreError(f"{source} is not a valid .keras archive: {e}") from e
        except (ValueError, TypeError) as e:
            if "safe_mode" in str(e):
                raise CerebroValueError(
                    f"{source} holds Python code (e.g. a Lambda layer), which Keras runs only "
                    "with safe_mode=False; pass safe_mode=False if you trust the file"
                ) from e
            raise StoreError(
                f"cannot build a model from {source}: {e} (custom layers, losses and metrics "
                "must be given as custom_objects=...)"
            ) from e


def _driver_model(
    data: bytes, *, custom_objects: Mapping[str, Any] | None, safe_mode: bool, source: str
) -> keras.Model:
    """The model for the driver: compiled as trained where Keras can restore that.

    A loss or metric missing from ``custom_objects`` only costs the compile settings, which
    inference does not need; a missing layer still fails.
    """
    kwargs = {"custom_objects": custom_objects, "safe_mode": safe_mode, "source": source}
    try:
        return _model_from_bytes(data, compile=True, **kwargs)
    except StoreError as e:
        model = _model_from_bytes(data, compile=False, **kwargs)
        logger.warning(
            "%s: built without its compile settings, which predicting does not need: %s", source, e
        )
        return model


def _model_to_bytes(model: keras.Model) -> bytes:
    with tempfile.TemporaryDirectory(prefix="cerebro-model-") as tmp:
        path = os.path.join(tmp, MODEL_FILE)
        model.save(path)
        with open(path, "rb") as f:
            return f.read()


def _weights_fingerprint(model: keras.Model) -> str:
    """A digest of every model variable: tells whether the model changed since it was saved."""
    digest = hashlib.sha256()
    for v in model.weights:
        arr = np.ascontiguousarray(v.numpy())
        digest.update(f"{v.path}:{arr.dtype.str}:{arr.shape};".encode())
        digest.update(arr.tobytes())
    return digest.hexdigest()


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _token(payload: bytes, safe_mode: bool, custom_names: list[str]) -> str:
    """The executor cache key: the model bytes and everything that changes how they load."""
    return _sha256(payload + f"|{safe_mode}|{custom_names}".encode())[:32]


def _resolve(path: Any, store: Store | None) -> tuple[Store, str]:
    """The store to use for ``path`` and the folder's URL on it."""
    if not isinstance(path, str) or not path:
        raise CerebroValueError(f"path must be a non-empty path or URL, got {path!r}")
    if store is None:
        store = Store.create(path)
        return store, store.prefix_path
    if not isinstance(store, Store):
        raise CerebroTypeError(
            f"store must be a cerebro Store or None, got {type(store).__name__}"
        )
    return store, store._normalize(path, "path").rstrip("/")


def _check_batch_size(value: Any, arg: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise CerebroValueError(f"{arg} must be an int >= 1, got {value!r}")
    return int(value)


def _check_custom_objects(value: Any) -> dict[str, Any] | None:
    if value is None:
        return None
    if not isinstance(value, Mapping) or not all(isinstance(k, str) for k in value):
        raise CerebroTypeError(
            f"custom_objects must be a dict of name -> class or function, got {value!r}"
        )
    return dict(value)


def _rank(shape: Shape) -> int:
    """How many array levels an output of per-sample ``shape`` becomes (0: a double)."""
    return 0 if len(shape) == 0 or tuple(shape) == (1,) else len(shape)


def _result_type(rank: int) -> Any:
    from pyspark.sql import types as T

    data_type: Any = T.DoubleType()
    for _ in range(rank):
        data_type = T.ArrayType(data_type, containsNull=False)
    return data_type


# ---------------------------------------------------------------------- the transformer
class SparkModel(Transformer, MLReadable["SparkModel"], MLWritable):
    """A trained Keras model that adds its predictions to Spark DataFrames.

    Args:
        model: a built ``keras.Model``.
        feature_columns: the columns the model reads, mapped to its inputs like in training
            (one input takes the one column; several are matched by name).
        label_columns: the columns the model was trained to predict, one per output (matched
            by name when there are several); they need not be in the data to transform.
        output_columns: the prediction columns, one per label column; default
            ``<label>__output``.
        batch_size: rows per inference call on the executors.
        custom_objects: custom layers, losses or metrics, as for ``keras.saving.load_model``.
        model_id: the id of the model in its search, if any (for logs and ``repr``).
        safe_mode: open model files from disk with Keras' safe mode (no Python code from the
            file runs); pass False only for files you trust that hold e.g. Lambda layers.

    Raises:
        CerebroTypeError: ``model`` is not a keras.Model or an argument has a wrong type.
        CerebroValueError: a bad value (empty column list, batch_size < 1, ...).
    """

    featureCols: Param[list[str]] = Param(
        Params._dummy(),
        "featureCols",
        "feature columns the model reads (mapped to its inputs by name when several)",
        typeConverter=TypeConverters.toListString,
    )
    labelCols: Param[list[str]] = Param(
        Params._dummy(),
        "labelCols",
        "label columns the model was trained on, one per output; they name the outputs",
        typeConverter=TypeConverters.toListString,
    )
    outputCols: Param[list[str]] = Param(
        Params._dummy(),
        "outputCols",
        "prediction columns, one per label column (default: <label>__output)",
        typeConverter=TypeConverters.toListString,
    )
    batchSize: Param[int] = Param(
        Params._dummy(),
        "batchSize",
        "rows per inference call on the executors (>= 1)",
        typeConverter=TypeConverters.toInt,
    )

    def __init__(
        self,
        model: keras.Model,
        *,
        feature_columns: Sequence[str],
        label_columns: Sequence[str],
        output_columns: Sequence[str] | None = None,
        batch_size: int = _DEFAULT_BATCH_SIZE,
        custom_objects: Mapping[str, Any] | None = None,
        model_id: str | None = None,
        safe_mode: bool = True,
    ) -> None:
        import keras

        super().__init__()
        if not isinstance(model, keras.Model):
            raise CerebroTypeError(
                f"model must be a keras.Model, got {type(model).__module__}."
                f"{type(model).__qualname__}"
            )
        if not model.built:
            raise CerebroValueError(
                f"model {model.name!r} is not built; give it an Input (functional API, or "
                "Sequential with keras.Input) or call it on data once"
            )
        self._setup(
            feature_columns,
            label_columns,
            output_columns,
            batch_size,
            custom_objects,
            model_id,
            safe_mode,
        )
        self._keras_model = model

    def _setup(
        self,
        feature_columns: Any,
        label_columns: Any,
        output_columns: Any,
        batch_size: Any,
        custom_objects: Any,
        model_id: Any,
        safe_mode: Any,
    ) -> None:
        self._setDefault(batchSize=_DEFAULT_BATCH_SIZE)
        self._set(featureCols=_column_list(feature_columns, "feature_columns"))
        self._set(labelCols=_column_list(label_columns, "label_columns"))
        if output_columns is not None:
            self._set(outputCols=self._checked_outputs(output_columns, "output_columns"))
        self._set(batchSize=_check_batch_size(batch_size, "batch_size"))
        if model_id is not None and not isinstance(model_id, str):
            raise CerebroTypeError(f"model_id must be a string or None, got {model_id!r}")
        if not isinstance(safe_mode, bool):
            raise CerebroTypeError(f"safe_mode must be True or False, got {safe_mode!r}")
        self.custom_objects = _check_custom_objects(custom_objects)
        self.model_id = model_id
        self.safe_mode = safe_mode
        self._keras_model: Any = None
        self._source: tuple[Store, str] | None = None  # a checkpoint not read yet
        self._payload: bytes | None = None  # the .keras bytes executors build the model from
        self._payload_fingerprint: str | None = None  # weights digest of the payload's model
        self._payload_trusted = False  # made here from a live model, not read from a file
        self._broadcasts: dict[tuple[int, str], Any] = {}

    @classmethod
    def _create(cls, **kwargs: Any) -> SparkModel:
        self = cls.__new__(cls)
        Transformer.__init__(self)
        self._setup(**kwargs)
        return self

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_checkpoint(
        cls,
        store: Store,
        checkpoint_url: str,
        *,
        feature_columns: Sequence[str],
        label_columns: Sequence[str],
        output_columns: Sequence[str] | None = None,
        batch_size: int = _DEFAULT_BATCH_SIZE,
        custom_objects: Mapping[str, Any] | None = None,
        model_id: str | None = None,
        safe_mode: bool = True,
    ) -> SparkModel:
        """A SparkModel of a ``.keras`` checkpoint in ``store``; the file is read on first use.

        Raises:
            StoreError: there is no file at ``checkpoint_url``, or it is not a ``.keras``
                (zip) archive (corrupt or truncated).
            CerebroTypeError, CerebroValueError: a bad argument (see :class:`SparkModel`).
        """
        if not isinstance(store, Store):
            raise CerebroTypeError(f"store must be a cerebro Store, got {type(store).__name__}")
        if not isinstance(checkpoint_url, str) or not checkpoint_url.endswith(".keras"):
            raise CerebroValueError(
                f"checkpoint_url must be the URL of a .keras file, got {checkpoint_url!r}"
            )
        self = cls._create(
            feature_columns=feature_columns,
            label_columns=label_columns,
            output_columns=output_columns,
            batch_size=batch_size,
            custom_objects=custom_objects,
            model_id=model_id,
            safe_mode=safe_mode,
        )
        _check_stored_archive(store, checkpoint_url)  # StoreError now if missing or not a zip
        self._source = (store, checkpoint_url)
        return self

    # ------------------------------------------------------------------ params
    def _checked_outputs(self, value: Any, arg: str) -> list[str]:
        outputs = _column_list(value, arg)
        labels = self.getLabelCols()
        if len(outputs) != len(labels):
            raise CerebroValueError(
                f"{arg} must name one column per label column ({len(labels)}: {labels}), "
                f"got {len(outputs)}: {outputs}"
            )
        return outputs

    def getFeatureCols(self) -> list[str]:
        """The feature columns the model reads."""
        return list(self.getOrDefault(self.featureCols))

    def getLabelCols(self) -> list[str]:
        """The label columns the model was trained on (they name the outputs)."""
        return list(self.getOrDefault(self.labelCols))

    def getOutputCols(self) -> list[str]:
        """The prediction columns: as set, else ``<label>__output`` per label column."""
        if self.isDefined(self.outputCols):
            return list(self.getOrDefault(self.outputCols))
        return [label + _OUTPUT_SUFFIX for label in self.getLabelCols()]

    def getBatchSize(self) -> int:
        """Rows per inference call on the executors."""
        return int(self.getOrDefault(self.batchSize))

    def setFeatureCols(self, value: Sequence[str]) -> SparkModel:
        """Read the features from these columns (e.g. named differently in the test data)."""
        return self._set(featureCols=_column_list(value, "featureCols"))

    def setOutputCols(self, value: Sequence[str]) -> SparkModel:
        """Write the predictions to these columns, one per label column."""
        return self._set(outputCols=self._checked_outputs(value, "outputCols"))

    def setBatchSize(self, value: int) -> SparkModel:
        """Rows per inference call on the executors (>= 1)."""
        return self._set(batchSize=_check_batch_size(value, "batchSize"))

    # ------------------------------------------------------------------ the keras model
    def keras(self) -> keras.Model:
        """The Keras model (built from the checkpoint or saved file on first use).

        Changes to its weights show in later :meth:`transform` and :meth:`save` calls.
        """
        if self._keras_model is None:
            self._keras_model = _driver_model(
                self._read_payload(),
                custom_objects=self.custom_objects,
                safe_mode=self.safe_mode,
                source=self._describe_source(),
            )
            self._payload_fingerprint = _weights_fingerprint(self._keras_model)
        return self._keras_model

    def _describe_source(self) -> str:
        if self._source is not None:
            return self._source[1]
        return f"the model of SparkModel {self.model_id or self.uid}"

    def _read_payload(self) -> bytes:
        if self._payload is None:
            if self._source is None:  # pragma: no cover - every constructor sets one of them
                raise StoreError(f"SparkModel {self.uid} has neither a model nor a file")
            store, url = self._source
            checkpoint_token(store, url)
            self._payload = store.read_bytes(url)
            self._payload_trusted = False
        return self._payload

    def _current_payload(self) -> bytes:
        """The ``.keras`` bytes of the model as it is now (re-saved if its weights changed)."""
        model = self.keras()
        fingerprint = _weights_fingerprint(model)
        if self._payload is None or fingerprint != self._payload_fingerprint:
            logger.debug("serialising the model of %s for the executors", self.uid)
            self._payload = _model_to_bytes(model)
            self._payload_fingerprint = fingerprint
            self._payload_trusted = True
        return self._payload

    def _executor_payload(self) -> tuple[bytes, str, bool]:
        """The bytes executors build the model from, their cache key and their safe mode.

        Bytes made here from the live model are as trusted as the model object itself, so
        executors build them without safe mode; bytes read from a file keep the caller's.
        """
        payload = self._current_payload()
        safe_mode = self.safe_mode and not self._payload_trusted
        return payload, _token(payload, safe_mode, sorted(self.custom_objects or {})), safe_mode

    # ------------------------------------------------------------------ transform
    def _transform(self, dataset: DataFrame) -> DataFrame:
        from pyspark.sql import DataFrame as SparkDataFrame
        from pyspark.sql import types as T
        from pyspark.sql.functions import pandas_udf

        if not isinstance(dataset, SparkDataFrame):
            raise CerebroTypeError(
                f"transform takes a Spark DataFrame, got {type(dataset).__name__}"
            )
        features = _column_list(self.getFeatureCols(), "featureCols")
        labels = _column_list(self.getLabelCols(), "labelCols")
        outputs = self._checked_outputs(self.getOutputCols(), "outputCols")
        batch_size = _check_batch_size(self.getBatchSize(), "batchSize")
        fields = {f.name: f for f in dataset.schema.fields}
        check_column_names("featureCols", features, list(fields))
        existing = {c.lower(): c for c in dataset.columns}
        for column in outputs:
            if column.lower() in existing:
                raise CerebroValueError(
                    f"output column {column!r} clashes with column {existing[column.lower()]!r} "
                    f"of the DataFrame; choose other names with setOutputCols (outputCols="
                    f"{outputs})"
                )

        model = self.keras()
        mapping = match_columns(model, features, labels, None)
        io = mapping.io
        feeds = []
        for name, column in mapping.inputs.items():
            kind = _column_kind(fields[column])
            if isinstance(kind, str):
                raise ColumnError(f"feature column {column!r} cannot feed the model: {kind}")
            shape = io.input_shapes[name] if io is not None else None
            dtype = io.input_dtypes[name] if io is not None else None
            if shape is not None:
                if kind.kind == "scalar":
                    _check_input_shape(name, column, shape, ())
                elif len(shape) != 1:
                    raise CerebroValueError(
                        f"model input {name!r} expects samples of shape {list(shape)} but "
                        f"feature column {column!r} holds one flat {kind.kind} per row; "
                        "reshape inside the model (keras.layers.Reshape)"
                    )
            feeds.append(_Feed(name, column, kind.kind, shape, dtype))
        as_dict_in = io is not None and (io.inputs_as_dict or len(feeds) > 1)
        inputs = [self._input_expression(f) for f in feeds]

        by_label = dict(zip(labels, outputs))
        if io is not None:
            ranks = {name: _rank(io.output_shapes[name]) for name in mapping.outputs}
        else:
            ranks = {"": self._probe_rank(dataset, inputs, feeds)}
        outs = tuple(
            _Output(name, by_label[label], ranks[name]) for name, label in mapping.outputs.items()
        )

        payload, token, safe_mode = self._executor_payload()
        spec = _InferenceSpec(
            token=token,
            model_id=self.model_id,
            safe_mode=safe_mode,
            custom_objects=self.custom_objects,
            batch_size=batch_size,
            feeds=tuple(feeds),
            inputs_as_dict=as_dict_in,
            outputs=outs,
            columns=tuple(outputs),
        )
        kinds = {o.column: o.rank for o in outs}
        result_type = T.StructType(
            [T.StructField(c, _result_type(kinds[c]), nullable=True) for c in outputs]
        )
        udf = pandas_udf(_udf_function(spec, self._ship(dataset, token, payload)), result_type)
        tmp = _TMP_COLUMN
        while tmp.lower() in existing:
            tmp += "_"
        logger.debug("transform with model %s: inputs %s, outputs %s", token[:12], feeds, outs)
        with_struct = dataset.select("*", udf(*inputs).alias(tmp))
        return with_struct.select(
            *[_ref(c) for c in dataset.columns],
            *[_ref(tmp).getField(c).alias(c) for c in outputs],
        )

    @staticmethod
    def _input_expression(feed: _Feed) -> Any:
        if feed.kind == "vector":
            from pyspark.ml.functions import vector_to_array

            dtype = "float32" if feed.dtype in ("float16", "float32", "bfloat16") else "float64"
            return vector_to_array(_ref(feed.column), dtype)
        return _ref(feed.column)

    def _probe_rank(self, dataset: DataFrame, inputs: list[Any], feeds: list[_Feed]) -> int:
        """Output rank of a model without symbolic outputs, from a prediction on one row."""
        sample = dataset.select(*inputs).limit(1).toPandas()
        if len(sample) == 0:
            return 0
        spec = _InferenceSpec(
            token="",
            model_id=self.model_id,
            safe_mode=True,
            custom_objects=None,
            batch_size=_DEFAULT_BATCH_SIZE,
            feeds=tuple(feeds),
            inputs_as_dict=False,
            outputs=(_Output("", "", 0),),
            columns=(),
        )
        pred = _predict_arrays(self.keras(), spec, [sample.iloc[:, i] for i in range(len(feeds))])
        return _rank(tuple(pred[0].shape[1:]))

    def _ship(self, dataset: DataFrame, token: str, payload: bytes) -> Any:
        """The model bytes as a broadcast (once per SparkContext), or inline without one."""
        try:
            sc = dataset.sparkSession.sparkContext
        except Exception:  # Spark Connect has no SparkContext: ship the bytes with the tasks
            logger.debug("no SparkContext: the model travels with each task")
            return _Inline(payload)
        key = (id(sc), token)
        shipped = self._broadcasts.get(key)
        if shipped is None:
            shipped = sc.broadcast(payload)
            self._broadcasts = {key: shipped}  # drop broadcasts of older versions of the model
        return shipped

    # ------------------------------------------------------------------ persistence
    def save(self, path: str, *, overwrite: bool = False, store: Store | None = None) -> None:
        """Save the model and its column config to folder ``path`` (a local path or URL).

        Each file is written to a temporary name and renamed into place; the config, written
        last, also holds the archive's SHA-256, so :meth:`load` never accepts half a save.

        Args:
            path: the folder, e.g. ``/tmp/best`` or ``hdfs://nn:8020/exp/best``.
            overwrite: replace a saved model already at ``path``.
            store: the store whose filesystem to use (e.g. an ``HDFSStore`` with a user);
                default ``Store.create(path)``.

        Raises:
            CerebroValueError: ``path`` holds files and ``overwrite`` is False, or is a file.
            StoreError: the files cannot be written.
        """
        store, url = _resolve(path, store)
        if store.exists(url):
            if not store.is_dir(url):
                raise CerebroValueError(f"path must be a folder, but {url} is a file")
            if store.listdir(url) and not overwrite:
                raise CerebroValueError(
                    f"path {url} is not empty; pass overwrite=True to replace a saved model"
                )
        payload = self._current_payload()
        params = {p.name: v for p, v in self._paramMap.items()}
        defaults = {p.name: v for p, v in self._defaultParamMap.items()}
        metadata = {
            "class": f"{type(self).__module__}.{type(self).__name__}",
            "timestamp": int(time.time() * 1000),
            "sparkVersion": _spark_version(),
            "uid": self.uid,
            "paramMap": params,
            "defaultParamMap": defaults,
        }
        config = {
            "format": _FORMAT,
            "format_version": _FORMAT_VERSION,
            "uid": self.uid,
            "model_file": MODEL_FILE,
            "sha256": _sha256(payload),
            "feature_columns": self.getFeatureCols(),
            "label_columns": self.getLabelCols(),
            "output_columns": params.get("outputCols"),
            "batch_size": self.getBatchSize(),
            "model_id": self.model_id,
            "custom_objects": sorted(self.custom_objects or {}),
            "keras_version": _keras_version(),
        }
        store.write_bytes(f"{url}/{MODEL_FILE}", payload)
        store.write_text(f"{url}/{METADATA_FILE}", json.dumps(metadata) + "\n")
        store.write_json(f"{url}/{CONFIG_FILE}", config)
        logger.info("saved SparkModel %s to %s", self.model_id or self.uid, url)

    @classmethod
    def load(
        cls,
        path: str,
        *,
        custom_objects: Mapping[str, Any] | None = None,
        safe_mode: bool = True,
        store: Store | None = None,
    ) -> SparkModel:
        """Load a SparkModel written by :meth:`save`.

        Args:
            path: the folder given to :meth:`save`.
            custom_objects: custom layers, losses or metrics the model needs.
            safe_mode: build the model with Keras' safe mode (see :class:`SparkModel`).
            store: the store whose filesystem to use; default ``Store.create(path)``.

        Raises:
            StoreError: no saved model at ``path``, or a missing, corrupt or unbuildable file.
            CerebroValueError: the model holds Python code and ``safe_mode`` is True.
        """
        custom_objects = _check_custom_objects(custom_objects)
        if not isinstance(safe_mode, bool):
            raise CerebroTypeError(f"safe_mode must be True or False, got {safe_mode!r}")
        store, url = _resolve(path, store)
        config_url = f"{url}/{CONFIG_FILE}"
        if not store.exists(config_url):
            raise StoreError(
                f"no saved SparkModel at {url}: {CONFIG_FILE} is missing (SparkModel.save "
                "writes it last, so the save did not finish or this is another folder)"
            )
        config = store.read_json(config_url)
        _check_config(config, config_url)
        model_url = f"{url}/{config['model_file']}"
        if not store.exists(model_url):
            raise StoreError(f"saved SparkModel {url} has no model file {model_url}")
        payload = store.read_bytes(model_url)
        if _sha256(payload) != config["sha256"]:
            raise StoreError(
                f"{model_url} does not match the checksum in {config_url} (corrupt, truncated "
                "or replaced); save the model again"
            )
        try:
            self = cls._create(
                feature_columns=config["feature_columns"],
                label_columns=config["label_columns"],
                output_columns=config["output_columns"],
                batch_size=config["batch_size"],
                custom_objects=custom_objects,
                model_id=config["model_id"],
                safe_mode=safe_mode,
            )
        except (CerebroTypeError, CerebroValueError) as e:
            raise StoreError(f"{config_url} holds a bad config: {e}") from e
        self._payload = payload
        missing = sorted(set(config["custom_objects"]) - set(custom_objects or {}))
        try:
            self._keras_model = _driver_model(
                payload, custom_objects=custom_objects, safe_mode=safe_mode, source=model_url
            )
        except StoreError as e:
            if missing:
                raise StoreError(f"{e}; it was saved with custom_objects {missing}") from e
            raise
        self._payload_fingerprint = _weights_fingerprint(self._keras_model)
        self._resetUid(config["uid"])
        return self

    def write(self) -> MLWriter:
        """A Spark ML writer (``model.write().overwrite().save(path)``; used by Pipelines)."""
        return _SparkModelWriter(self)

    @classmethod
    def read(cls) -> MLReader[SparkModel]:
        """A Spark ML reader (``SparkModel.read().load(path)``; used by PipelineModel.load)."""
        return _SparkModelReader(cls)

    def __repr__(self) -> str:
        name = f"model_id={self.model_id!r}, " if self.model_id else ""
        return (
            f"SparkModel({name}featureCols={self.getFeatureCols()}, "
            f"outputCols={self.getOutputCols()})"
        )


class _SparkModelWriter(MLWriter):
    """Writes through :meth:`SparkModel.save`, which needs no Spark session."""

    def __init__(self, instance: SparkModel) -> None:
        super().__init__()
        self.instance = instance

    def save(self, path: str) -> None:
        self.instance.save(path, overwrite=self.shouldOverwrite)

    def saveImpl(self, path: str) -> None:
        self.instance.save(path, overwrite=self.shouldOverwrite)


class _SparkModelReader(MLReader[SparkModel]):
    """Reads through :meth:`SparkModel.load`."""

    def __init__(self, cls: type[SparkModel]) -> None:
        super().__init__()
        self._cls = cls

    def load(self, path: str) -> SparkModel:
        return self._cls.load(path)


def _check_config(config: Any, url: str) -> None:
    """Raise StoreError unless ``config`` is a SparkModel config this version reads."""
    if not isinstance(config, dict) or config.get("format") != _FORMAT:
        raise StoreError(f"{url} is not a SparkModel config (format {_FORMAT!r} expected)")
    if config.get("format_version") != _FORMAT_VERSION:
        raise StoreError(
            f"{url} has format_version {config.get('format_version')!r}; this Cerebro reads "
            f"version {_FORMAT_VERSION}"
        )
    expected = {
        "uid": str,
        "model_file": str,
        "sha256": str,
        "feature_columns": list,
        "label_columns": list,
        "batch_size": int,
        "custom_objects": list,
    }
    for key, kind in expected.items():
        if not isinstance(config.get(key), kind):
            raise StoreError(f"{url}: {key!r} must be a {kind.__name__}, got {config.get(key)!r}")
    if "/" in config["model_file"] or config["model_file"].startswith("."):
        raise StoreError(f"{url}: model_file must be a file name, got {config['model_file']!r}")
    if config.get("output_columns") is not None and not isinstance(config["output_columns"], list):
        raise StoreError(f"{url}: 'output_columns' must be a list or null")


def _spark_version() -> str:
    import pyspark

    return pyspark.__version__


def _keras_version() -> str:
    import keras

    return keras.__version__
