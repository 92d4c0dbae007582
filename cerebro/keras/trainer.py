"""The worker-side trainer: trains and evaluates models that hop through checkpoint files.

A worker holds one partition (a train shard and a validation shard) in memory as numpy arrays
and a :class:`KerasTrainer` over them. The driver sends it *hops*: train model ``m`` from
checkpoint ``a`` for one pass over this partition and save the result as checkpoint ``b``.
The trainer keeps the models it built in memory (LRU) together with the checkpoint each one
currently equals, so a model that comes back to the worker it left is not loaded at all, and a
model that comes back after training elsewhere only has its state reloaded: its compiled train
function is reused, which saves far more than the file reads (see ``benchmarks/``).
"""

from __future__ import annotations

import hashlib
import logging
import math
import mmap
import os
import time
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from cerebro.exceptions import (
    CerebroTypeError,
    CerebroValueError,
    ColumnError,
    NonFiniteLossError,
    StoreError,
)
from cerebro.keras._columns import ColumnMapping, match_columns
from cerebro.keras.checkpoint import (
    STATE_SUFFIX,
    checkpoint_token,
    create_initial_checkpoint,
    load_checkpoint,
    load_state,
    save_checkpoint,
    save_state,
)
from cerebro.keras.estimator import WorkerSpec

if TYPE_CHECKING:
    from cerebro.storage import Store

logger = logging.getLogger(__name__)

__all__ = ["KerasTrainer", "configure_threads", "shuffle_seed", "create_initial_checkpoint"]

#: Environment variable with the number of TensorFlow threads a worker may use.
THREADS_ENV = "CEREBRO_NUM_THREADS"


def configure_threads(num_threads: int | None = None, inter_op_threads: int | None = None) -> bool:
    """Size TensorFlow's thread pools; effective only before TensorFlow runs its first op.

    Workers that share a machine should each use about (cores / workers) threads, or they slow
    each other down.

    Args:
        num_threads: intra-op threads (the ones a matmul uses). None reads the
            ``CEREBRO_NUM_THREADS`` environment variable and, if that is unset, leaves
            TensorFlow's defaults alone. 0 means TensorFlow's default.
        inter_op_threads: threads running independent ops in parallel; defaults to
            ``min(num_threads, 2)`` (a Keras train step has little op-level parallelism).

    Returns:
        True when the setting is in effect, False when nothing was asked for or TensorFlow had
        already started with other values (logged as a warning).

    Raises:
        CerebroValueError: a negative or non-integer thread count (also from the environment).
    """
    if num_threads is None:
        raw = os.environ.get(THREADS_ENV, "").strip()
        if not raw:
            return False
        try:
            num_threads = int(raw)
        except ValueError:
            raise CerebroValueError(
                f"environment variable {THREADS_ENV} must be an integer >= 0, got {raw!r}"
            ) from None
    for name, value in (("num_threads", num_threads), ("inter_op_threads", inter_op_threads)):
        if value is not None and (
            isinstance(value, bool) or not isinstance(value, int) or value < 0
        ):
            raise CerebroValueError(f"{name} must be an int >= 0, got {value!r}")
    inter = inter_op_threads if inter_op_threads is not None else min(num_threads, 2)
    import tensorflow as tf

    threading = tf.config.threading
    current = (
        threading.get_intra_op_parallelism_threads(),
        threading.get_inter_op_parallelism_threads(),
    )
    if current == (num_threads, inter):
        return True
    try:
        threading.set_intra_op_parallelism_threads(num_threads)
        threading.set_inter_op_parallelism_threads(inter)
    except RuntimeError as e:
        logger.warning(
            "cannot set TensorFlow threads to intra=%d inter=%d (it already runs with %s): %s",
            num_threads,
            inter,
            current,
            e,
        )
        return False
    logger.debug("TensorFlow threads: intra=%d inter=%d", num_threads, inter)
    return True


def shuffle_seed(seed: int, model_id: str, epoch: int, partition: int) -> int:
    """The seed of one sub-epoch's shuffle: the same inputs give the same order on any machine.

    Derived by hashing (not by Python's ``hash``, which varies between processes).
    """
    digest = hashlib.blake2b(
        f"{seed}\x00{model_id}\x00{epoch}\x00{partition}".encode(), digest_size=8
    ).digest()
    return int.from_bytes(digest, "little")


# ---------------------------------------------------------------------- internals
class _ExpectedRetracing(logging.Filter):
    """Drops TensorFlow's "N of the last M calls triggered tf.function retracing" warning.

    A worker holds many models and traces each one's train and test step once, by design;
    TensorFlow counts those as retracing and would warn on every worker.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        return "triggered tf.function retracing" not in record.getMessage()


_RETRACING_FILTER = _ExpectedRetracing()


@dataclass
class _CachedModel:
    """A built model and the checkpoint it equals (None while its state is ahead of any file)."""

    model: Any
    checkpoint: str | None = None
    token: tuple[int, int | None] | None = None
    mappings: dict[str | None, ColumnMapping] = field(default_factory=dict)


@dataclass
class _Shard:
    """One split after the transformation, plus arrays already shaped for model inputs."""

    arrays: dict[str, np.ndarray]
    rows: int
    prepared: dict[tuple[Any, ...], np.ndarray] = field(default_factory=dict)


def _same_file(a: tuple[int, int | None] | None, b: tuple[int, int | None]) -> bool:
    if a is None:
        return False
    if a[1] is None or b[1] is None:  # a filesystem without modification times: size only
        return a[0] == b[0]
    return a == b


def _check_shard(data: Any, arg: str, columns: Sequence[str]) -> int:
    if not isinstance(data, Mapping):
        raise CerebroTypeError(
            f"{arg} must be a dict of column name -> numpy array, got {type(data).__name__}"
        )
    missing = [c for c in columns if c not in data]
    if missing:
        raise ColumnError(f"{arg} lacks column(s) {missing}; it has {sorted(data)}")
    lengths = {c: len(data[c]) for c in columns}
    if len(set(lengths.values())) != 1:
        raise CerebroValueError(f"{arg} columns must have the same number of rows, got {lengths}")
    rows = next(iter(lengths.values()))
    if rows == 0:
        raise CerebroValueError(f"{arg} must hold at least one row, got 0")
    return rows


def _take(data: Any, perm: np.ndarray) -> Any:
    if isinstance(data, dict):
        return {k: np.take(v, perm, axis=0) for k, v in data.items()}
    return np.take(data, perm, axis=0)


def _head(data: Any) -> Any:
    if isinstance(data, dict):
        return {k: v[:1] for k, v in data.items()}
    return data[:1]


def _batches(x: Any, y: Any, batch_size: int, perm: np.ndarray | None = None) -> Any:
    """``(x[perm], y[perm])`` (or ``(x, y)`` in order), in batches of ``batch_size``, as a
    ``tf.data.Dataset``.

    The same batches Keras makes of numpy arrays with ``shuffle=False``, but without the
    slicing pipeline Keras builds around numpy input on every ``fit``/``evaluate`` call, which
    costs about 60 ms per call (a hop is one call). Columns kept on disk (memory-mapped) are
    gathered batch by batch instead of as a shuffled copy of the shard: the same batches.
    """
    import tensorflow as tf

    if _any_mapped(x) or _any_mapped(y):
        return _gathered_batches(x, y, batch_size, perm)
    if perm is not None:
        x, y = _take(x, perm), _take(y, perm)
    return tf.data.Dataset.from_tensor_slices((x, y)).batch(batch_size)


class _MappedColumn:
    """A column left in its memory-mapped file, shaped and cast per read exactly as
    ``KerasTrainer._prepared`` shapes and casts an in-memory column once."""

    def __init__(self, source: np.ndarray, row_shape: tuple[int, ...], casts: list[str]) -> None:
        self.source = source
        self.casts = casts
        self.shape = (len(source), *row_shape)
        self.dtype = np.dtype(casts[-1]) if casts else source.dtype
        #: Datasets over this column (see _gathered_batches), by batch size and columns.
        self.datasets: dict[Any, Any] = {}

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, index: Any) -> np.ndarray:
        out = np.asarray(self.source[index])
        out = out.reshape(len(out), *self.shape[1:])
        for target in self.casts:
            out = out.astype(target)
        return out


def _on_disk(arr: Any) -> bool:
    """Whether ``arr`` is (a view of) a memory-mapped file."""
    while isinstance(arr, np.ndarray):
        if isinstance(arr, np.memmap):
            return True
        arr = arr.base
    return isinstance(arr, mmap.mmap)


def _leaves(data: Any) -> list[Any]:
    return list(data.values()) if isinstance(data, dict) else [data]


def _any_mapped(data: Any) -> bool:
    return any(isinstance(a, _MappedColumn) for a in _leaves(data))


def _gathered_batches(x: Any, y: Any, batch_size: int, perm: np.ndarray | None) -> Any:
    """The batches of :func:`_batches`, read from memory-mapped columns one batch at a time.

    Each shuffled batch reads its rows in ascending order (sequential disk access) and is then
    put back into the order of ``perm``, so batch ``i`` equals ``x[perm[i*b:(i+1)*b]]``.
    The dataset is built once per columns and batch size and reads the order of its next pass
    from a feed: TensorFlow keeps every ``from_generator`` dataset's function alive for good,
    so one per hop would leak (with its permutation).
    """
    owner = next(a for a in _leaves(x) + _leaves(y) if isinstance(a, _MappedColumn))
    key = (batch_size, _identity(x), _identity(y))
    cached = owner.datasets.get(key)
    if cached is None:
        feed: dict[str, np.ndarray | None] = {"perm": None}
        cached = owner.datasets[key] = (_generator_dataset(x, y, batch_size, feed), feed)
    dataset, feed = cached
    feed["perm"] = perm
    return dataset


def _identity(data: Any) -> Any:
    if isinstance(data, dict):
        return tuple((k, id(v)) for k, v in data.items())
    return id(data)


def _generator_dataset(x: Any, y: Any, batch_size: int, feed: dict[str, Any]) -> Any:
    """A dataset of the batches of ``(x, y)`` in the order ``feed["perm"]`` holds when a pass
    starts (None: in order)."""
    import tensorflow as tf

    def over(fn: Any, data: Any) -> Any:
        return {k: fn(v) for k, v in data.items()} if isinstance(data, dict) else fn(data)

    def spec(a: Any) -> Any:
        return tf.TensorSpec((None, *a.shape[1:]), tf.as_dtype(a.dtype))

    rows = len(_leaves(x)[0])

    def batch(perm: np.ndarray | None, start: int) -> tuple[Any, Any]:
        if perm is None:
            part = slice(start, start + batch_size)
            return over(lambda a: a[part], x), over(lambda a: a[part], y)
        idx = perm[start : start + batch_size]
        order = np.argsort(idx, kind="stable")
        ascending = idx[order]

        def gather(a: Any) -> np.ndarray:
            block = a[ascending]
            out = np.empty_like(block)
            out[order] = block  # row order[j] of the batch is idx[order[j]]
            return out

        return over(gather, x), over(gather, y)

    def generate() -> Any:
        perm = feed["perm"]
        for start in range(0, rows, batch_size):
            yield batch(perm, start)

    dataset = tf.data.Dataset.from_generator(
        generate, output_signature=(over(spec, x), over(spec, y))
    )
    steps = math.ceil(rows / batch_size)
    return dataset.apply(tf.data.experimental.assert_cardinality(steps)).prefetch(1)


def _build_compiled_state(model: Any, x: Any, y: Any) -> float:
    """Create the variables of the compiled loss and metrics now, on one row; returns seconds.

    Keras (TensorFlow backend) creates them while tracing the first train or test step, and
    ``tf.function`` then traces that step a second time; building them first halves the
    tracing cost of a model's first hop on a worker. The metrics are reset afterwards, and
    ``fit``/``evaluate`` reset them again anyway. Best effort: if it fails, Keras builds them
    as before.
    """
    t0 = time.perf_counter()
    one_x, one_y = _head(x), _head(y)
    try:
        y_pred = model(one_x, training=False)
        model.compute_loss(x=one_x, y=one_y, y_pred=y_pred, training=False)
        model.compute_metrics(one_x, one_y, y_pred, sample_weight=None)
    except Exception:  # a model Keras builds in its own way: leave it to fit/evaluate
        logger.debug("could not build the compiled state of %s eagerly", model.name, exc_info=True)
    finally:
        model.reset_metrics()
    return time.perf_counter() - t0


class KerasTrainer:
    """Trains and evaluates models on one worker's partition, one hop at a time.

    Args:
        store: where the checkpoints are.
        train_data: this partition's training shard, column -> array (``(n,)`` for scalars,
            ``(n, *shape)`` for arrays), as ``cerebro.storage.dataset.read_shard`` returns it.
        val_data: this partition's validation shard; None or ``{}`` when there is none.
        feature_columns: the columns the models read.
        label_columns: the columns the models predict, one per output.
        max_cached_models: how many built models to keep in memory (least recently used go).
            Every model that trains at the same time should fit: a model evicted and visiting
            again is rebuilt and its train step retraced (about a second for a small MLP),
            which made 16 configurations take 3.4x as long as 8 with the old limit of 8. The
            driver tells workers to drop models that ended, so only running ones count.
        num_threads: TensorFlow threads (see :func:`configure_threads`); None reads
            ``CEREBRO_NUM_THREADS``.

    Raises:
        CerebroValueError / ColumnError: a shard lacks a column, is empty or is ragged.
    """

    def __init__(
        self,
        store: Store,
        train_data: Mapping[str, np.ndarray],
        val_data: Mapping[str, np.ndarray] | None,
        feature_columns: Sequence[str],
        label_columns: Sequence[str],
        *,
        max_cached_models: int = 64,
        num_threads: int | None = None,
    ) -> None:
        if (
            isinstance(max_cached_models, bool)
            or not isinstance(max_cached_models, int)
            or max_cached_models < 1
        ):
            raise CerebroValueError(
                f"max_cached_models must be an int >= 1, got {max_cached_models!r}"
            )
        self.store = store
        self.feature_columns = list(feature_columns)
        self.label_columns = list(label_columns)
        columns = self.feature_columns + self.label_columns
        _check_shard(train_data, "train_data", columns)
        self._raw: dict[str, dict[str, np.ndarray]] = {"train": dict(train_data)}
        if val_data:
            _check_shard(val_data, "val_data", columns)
            self._raw["val"] = dict(val_data)
        self.max_cached_models = max_cached_models
        self._models: OrderedDict[str, _CachedModel] = OrderedDict()
        self._shards: OrderedDict[tuple[str, str | None], _Shard] = OrderedDict()
        configure_threads(num_threads)
        logging.getLogger("tensorflow").addFilter(_RETRACING_FILTER)

    # ------------------------------------------------------------------ public API
    @property
    def cached_models(self) -> list[str]:
        """Ids of the models held in memory, least recently used first."""
        return list(self._models)

    @property
    def has_validation(self) -> bool:
        """Whether this trainer holds a validation shard."""
        return "val" in self._raw

    def forget(self, model_id: str) -> None:
        """Drop a model from memory (e.g. when it is finished); the next use reloads it."""
        self._models.pop(model_id, None)

    def train(
        self,
        model_id: str,
        spec: WorkerSpec,
        checkpoint_in: str,
        checkpoint_out: str,
        epoch: int,
        partition: int,
        seed: int,
        *,
        model_in: str | None = None,
        keras_out: str | None = None,
    ) -> dict[str, Any]:
        """Train one pass over this partition, starting from ``checkpoint_in``.

        The shard is reshuffled in memory with :func:`shuffle_seed` ``(seed, model_id, epoch,
        partition)``; the model sees it once in batches of ``spec.batch_size`` (one ``fit``
        epoch with ``initial_epoch=epoch``); the new state goes to ``checkpoint_out``.

        Args:
            checkpoint_in: the state to start from: a ``.keras`` archive or a state file.
            checkpoint_out: where the new state goes; a ``.state`` URL gets a state file
                (fast, for the next hop), a ``.keras`` URL a full archive.
            model_in: a ``.keras`` archive of this model (any earlier state) to build it from
                when this worker does not hold it; required when ``checkpoint_in`` is a state
                file.
            keras_out: also save the new state as a full ``.keras`` archive here (the driver
                asks for one at the end of each epoch).

        Returns:
            ``{"metrics": {name: value}, "rows": n, "seconds": fit time, "load_seconds",
            "save_seconds", "load": "cached" | "state" | "full", "checkpoint": checkpoint_out,
            "keras_checkpoint": keras_out}``;
            metrics are Keras' running means over the pass (``loss``, compiled metrics, and
            per-output ``<output>_loss`` for several outputs).

        Raises:
            NonFiniteLossError: the loss became NaN or infinite (nothing is saved).
            StoreError: ``checkpoint_in`` is missing.
        """
        _check_hop_args(spec, epoch, partition)
        if not isinstance(seed, int) or isinstance(seed, bool):
            raise CerebroValueError(f"seed must be an int, got {seed!r}")
        entry, load_kind, load_seconds = self._acquire(model_id, spec, checkpoint_in, model_in)
        x, y, rows = self._feeds(entry, spec, "train")
        if load_kind == "full":
            load_seconds += _build_compiled_state(entry.model, x, y)
        perm = np.random.default_rng(shuffle_seed(seed, model_id, epoch, partition)).permutation(
            rows
        )
        batches = _batches(x, y, spec.batch_size, perm)

        entry.checkpoint = entry.token = None  # from here on the model is ahead of every file
        t0 = time.perf_counter()
        try:
            history = entry.model.fit(
                batches,
                epochs=epoch + 1,
                initial_epoch=epoch,
                shuffle=False,
                verbose=0,
                callbacks=list(spec.callbacks) or None,
            )
        except BaseException:
            self.forget(model_id)
            raise
        seconds = time.perf_counter() - t0
        metrics = {k: float(v[-1]) for k, v in history.history.items() if len(v)}
        loss = metrics.get("loss", math.nan)
        if not math.isfinite(loss):
            self.forget(model_id)
            raise NonFiniteLossError(
                f"model {model_id} reached a non-finite loss ({loss}) in epoch {epoch} on "
                f"partition {partition}; lower the learning rate or check the data for "
                "extreme values"
            )

        t1 = time.perf_counter()
        _save(entry.model, self.store, checkpoint_out)
        if keras_out is not None:
            save_checkpoint(entry.model, self.store, keras_out)
        entry.checkpoint, entry.token = (
            checkpoint_out,
            checkpoint_token(self.store, checkpoint_out),
        )
        save_seconds = time.perf_counter() - t1
        logger.debug(
            "trained %s epoch %d partition %d: %d rows in %.3fs (load %s %.3fs, save %.3fs)",
            model_id,
            epoch,
            partition,
            rows,
            seconds,
            load_kind,
            load_seconds,
            save_seconds,
        )
        return {
            "metrics": metrics,
            "rows": rows,
            "seconds": seconds,
            "load_seconds": load_seconds,
            "save_seconds": save_seconds,
            "load": load_kind,
            "checkpoint": checkpoint_out,
            "keras_checkpoint": keras_out,
        }

    def evaluate(
        self,
        model_id: str,
        spec: WorkerSpec,
        checkpoint_in: str,
        partition: int,
        *,
        model_in: str | None = None,
    ) -> dict[str, Any]:
        """Compute the model's metrics on this partition's validation shard (nothing is saved).

        ``checkpoint_in`` and ``model_in`` are as for :meth:`train`.

        Returns:
            ``{"metrics": {name: value}, "rows": n, "seconds", "load_seconds",
            "save_seconds": 0.0, "load": ...}``; combine partitions with
            :func:`cerebro.keras.aggregate_metrics`.

        Raises:
            CerebroValueError: this trainer has no validation shard.
        """
        _check_hop_args(spec, 0, partition)
        if not self.has_validation:
            raise CerebroValueError(
                f"cannot evaluate model {model_id} on partition {partition}: this trainer was "
                "given no validation data"
            )
        entry, load_kind, load_seconds = self._acquire(model_id, spec, checkpoint_in, model_in)
        x, y, rows = self._feeds(entry, spec, "val")
        if load_kind == "full":
            load_seconds += _build_compiled_state(entry.model, x, y)
        t0 = time.perf_counter()
        result = entry.model.evaluate(_batches(x, y, spec.batch_size), verbose=0, return_dict=True)
        seconds = time.perf_counter() - t0
        return {
            "metrics": {k: float(v) for k, v in result.items()},
            "rows": rows,
            "seconds": seconds,
            "load_seconds": load_seconds,
            "save_seconds": 0.0,
            "load": load_kind,
        }

    # ------------------------------------------------------------------ models
    def _acquire(
        self, model_id: str, spec: WorkerSpec, url: str, model_url: str | None
    ) -> tuple[_CachedModel, str, float]:
        """The model in the state of checkpoint ``url``: cached, state reloaded, or built from
        ``model_url`` (default ``url``) and then given the state of ``url``."""
        if model_url is None:
            if url.endswith(STATE_SUFFIX):
                raise CerebroValueError(
                    f"model_in must name the model's .keras archive when checkpoint_in is a "
                    f"state file, got None for {url!r}"
                )
            model_url = url
        token = checkpoint_token(self.store, url)
        entry = self._models.get(model_id)
        if entry is not None and entry.checkpoint == url and _same_file(entry.token, token):
            self._models.move_to_end(model_id)
            return entry, "cached", 0.0
        t0 = time.perf_counter()
        if entry is not None and load_state(entry.model, self.store, url):
            kind = "state"
        else:
            self.forget(model_id)
            model = load_checkpoint(self.store, model_url, spec.custom_objects, spec.safe_mode)
            if model_url != url and not load_state(model, self.store, url):
                raise StoreError(
                    f"checkpoint {url} does not fit the model built from {model_url} (other "
                    "architecture or optimizer)"
                )
            entry = _CachedModel(model)
            self._models[model_id] = entry
            kind = "full"
        entry.checkpoint, entry.token = url, token
        self._models.move_to_end(model_id)
        while len(self._models) > self.max_cached_models:
            evicted, _ = self._models.popitem(last=False)
            logger.debug("evicted model %s from the worker's cache", evicted)
        return entry, kind, time.perf_counter() - t0

    # ------------------------------------------------------------------ data
    def _shard(self, split: str, spec: WorkerSpec) -> _Shard:
        key = (split, spec.transform_key if spec.transformation_fn is not None else None)
        shard = self._shards.get(key)
        if shard is None:
            raw = self._raw[split]
            arrays = raw
            if spec.transformation_fn is not None:
                arrays = _apply_transformation(
                    spec.transformation_fn, raw, self.feature_columns + self.label_columns
                )
            rows = len(arrays[self.feature_columns[0]])
            shard = _Shard(arrays=arrays, rows=rows)
            self._shards[key] = shard
            while len(self._shards) > 4:  # a search rarely has more than one or two functions
                self._shards.popitem(last=False)
        self._shards.move_to_end(key)
        return shard

    def _feeds(self, entry: _CachedModel, spec: WorkerSpec, split: str) -> tuple[Any, Any, int]:
        """The model's ``x`` and ``y`` for ``split``: arrays, or dicts keyed by input/output."""
        shard = self._shard(split, spec)
        mapping_key = spec.transform_key if spec.transformation_fn is not None else None
        mapping = entry.mappings.get(mapping_key)
        if mapping is None:
            shapes = {c: list(a.shape[1:]) for c, a in shard.arrays.items()}
            mapping = match_columns(entry.model, self.feature_columns, self.label_columns, shapes)
            entry.mappings[mapping_key] = mapping
        io = mapping.io

        xs: dict[str, np.ndarray] = {}
        for name, col in mapping.inputs.items():
            dims = io.input_shapes[name] if io is not None else None
            dtype = io.input_dtypes[name] if io is not None else None
            xs[name] = self._prepared(shard, col, dims, dtype)
        ys: dict[str, np.ndarray] = {}
        for name, col in mapping.outputs.items():
            dims = io.output_shapes[name] if io is not None else None
            ys[name] = self._prepared(shard, col, dims, None)
        as_dict_in = io is not None and (io.inputs_as_dict or len(xs) > 1)
        as_dict_out = io is not None and (io.outputs_as_dict or len(ys) > 1)
        x = xs if as_dict_in else next(iter(xs.values()))
        y = ys if as_dict_out else next(iter(ys.values()))
        return x, y, shard.rows

    @staticmethod
    def _prepared(
        shard: _Shard, col: str, dims: tuple[int | None, ...] | None, dtype: str | None
    ) -> np.ndarray | _MappedColumn:
        """Column ``col`` shaped for a layer of per-sample shape ``dims`` and cast to ``dtype``.

        Cached per shard: a scalar column fed to a ``(1,)`` input becomes ``(n, 1)`` once, and
        float64 data fed to a float32 input is cast once instead of in every batch. Floats end
        in Keras' ``floatx`` (as Keras casts numpy input), labels included. A memory-mapped
        column (the worker's disk cache) stays on disk: it is shaped and cast per batch.
        """
        import keras

        floatx = keras.config.floatx()
        key = (col, dims, dtype, floatx)
        arr = shard.prepared.get(key)
        if arr is None:
            arr = shard.arrays[col]
            on_disk = _on_disk(arr)
            if not on_disk:
                arr = np.asarray(arr)
            casts, current = [], arr.dtype
            for target in (dtype, floatx):
                if (
                    target in ("float16", "float32", "float64")
                    and np.issubdtype(current, np.floating)
                    and current != np.dtype(target)
                ):
                    casts.append(target)
                    current = np.dtype(target)
            reshape = dims == (1,) and arr.ndim == 1
            if on_disk:
                arr = _MappedColumn(arr, (1,) if reshape else arr.shape[1:], casts)
            else:
                if reshape:
                    arr = arr.reshape(-1, 1)
                for target in casts:
                    arr = arr.astype(target)
            shard.prepared[key] = arr
        return arr


def _save(model: Any, store: Store, url: str) -> None:
    """Save ``model``'s state as a state file or a ``.keras`` archive, by ``url``'s suffix."""
    if url.endswith(STATE_SUFFIX):
        save_state(model, store, url)
    else:
        save_checkpoint(model, store, url)


def _check_hop_args(spec: Any, epoch: Any, partition: Any) -> None:
    if not isinstance(spec, WorkerSpec):
        raise CerebroTypeError(
            f"spec must be a WorkerSpec (SparkEstimator.worker_spec()), got {type(spec).__name__}"
        )
    for name, value in (("epoch", epoch), ("partition", partition)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise CerebroValueError(f"{name} must be an int >= 0, got {value!r}")


def _apply_transformation(
    fn: Any, raw: dict[str, np.ndarray], columns: list[str]
) -> dict[str, np.ndarray]:
    out = fn(dict(raw))
    if not isinstance(out, Mapping):
        raise CerebroTypeError(
            f"transformation_fn must return a dict of column -> array, got {type(out).__name__}"
        )
    arrays = {k: np.asarray(v) for k, v in out.items()}
    missing = [c for c in columns if c not in arrays]
    if missing:
        raise ColumnError(
            f"transformation_fn must return every feature and label column, but {missing} are "
            f"missing from its result (keys {sorted(arrays)})"
        )
    lengths = {c: len(arrays[c]) for c in columns}
    if len(set(lengths.values())) != 1 or not next(iter(lengths.values())):
        raise CerebroValueError(
            "transformation_fn must return columns with the same, non-zero number of rows, "
            f"got {lengths}"
        )
    return arrays
