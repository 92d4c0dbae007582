"""Model state as files: one Keras 3 ``.keras`` checkpoint per model and hop.

A checkpoint is an ordinary ``.keras`` archive (architecture, compile settings, weights and the
optimizer's variables: iteration count, learning rate and slots), so
``keras.saving.load_model`` opens it anywhere. Every checkpoint is written to a temporary name
and renamed into place (:meth:`Store.local_write`), so a crash never leaves half a file.

Workers that already hold a built copy of a model only reload its *state*
(:func:`load_state`): that skips rebuilding the model and, above all, retracing its compiled
train function, which costs far more than reading the weights.

Between two workers a model's state travels in a *state file* (``.state``, :func:`save_state`):
the raw bytes of every model and optimizer variable behind a small JSON header. Writing and
reading one takes a few milliseconds where a ``.keras`` archive takes 30-60 ms each way for a
small model (Keras walks the whole object graph and HDF5 adds its own cost), and a hop is
otherwise only the training itself. The ``.keras`` archive remains the format users see: the
driver asks for one at the end of each epoch, and every model's result is one.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import warnings
import zipfile
from typing import TYPE_CHECKING, Any

import numpy as np

from cerebro.exceptions import CerebroTypeError, CerebroValueError, StoreError

if TYPE_CHECKING:
    import keras

    from cerebro.keras.estimator import SparkEstimator
    from cerebro.storage import Store

logger = logging.getLogger(__name__)

__all__ = [
    "create_initial_checkpoint",
    "save_checkpoint",
    "load_checkpoint",
    "load_state",
    "save_state",
    "checkpoint_token",
    "STATE_SUFFIX",
]

#: The suffix of state files (raw variables; see the module docstring).
STATE_SUFFIX = ".state"
_STATE_MAGIC = b"CEREBRO-STATE-1\n"
_ALIGN = 64  # each array starts on a 64-byte boundary, so views of the buffer stay aligned

# The member of a .keras archive that holds every variable (layers, optimizer, metrics); it has
# the same layout as a ``.weights.h5`` file.
_WEIGHTS_MEMBER = "model.weights.h5"
# Keras warns (instead of failing) when an optimizer's variables do not fit the saved ones.
_SKIP_WARNING = "Skipping variable loading"


def _check_url(url: str, suffixes: tuple[str, ...] = (".keras",)) -> None:
    if not isinstance(url, str) or not url.endswith(suffixes):
        rule = " or ".join(repr(s) for s in suffixes)
        raise CerebroValueError(f"checkpoint URL must end with {rule}, got {url!r}")


def _check_archive(path: str, url: str) -> None:
    if not zipfile.is_zipfile(path):
        raise StoreError(f"checkpoint {url} is not a .keras archive (corrupt or truncated)")


def _check_stored_archive(store: Store, url: str) -> None:
    """Raise :class:`StoreError` unless file ``url`` is a zip archive, as ``.keras`` files are.

    Reads only the archive's end record, so a truncated or foreign file is refused at once
    without downloading the whole checkpoint.
    """
    checkpoint_token(store, url)  # a clear error when the file is missing
    with store.filesystem.open_input_file(store.to_fs_path(url)) as f:
        if not zipfile.is_zipfile(f):
            raise StoreError(f"checkpoint {url} is not a .keras archive (corrupt or truncated)")


def create_initial_checkpoint(
    estimator: SparkEstimator, store: Store, model_id: str, url: str | None = None
) -> str:
    """Compile the estimator's model and save it as the model's first checkpoint (driver side).

    The optimizer is built before saving, so the file holds its slot variables from the start
    and every later load restores the same set of variables.

    Args:
        estimator: the estimator; its model is compiled in place with its optimizer, loss,
            metrics and loss weights.
        store: where the checkpoint goes.
        model_id: the model's id (its run folder is ``store.get_run_path(model_id)``).
        url: the checkpoint's URL; defaults to ``store.get_checkpoint_path(model_id)``.

    Returns:
        The checkpoint's URL.

    Raises:
        CerebroTypeError: the estimator's model is not a keras.Model.
        CerebroValueError: a bad URL or model id, or a model that is not built.
    """
    import keras

    default_url = store.get_checkpoint_path(model_id)  # also validates model_id
    url = url if url is not None else default_url
    _check_url(url)
    model = estimator.model
    if not isinstance(model, keras.Model):
        raise CerebroTypeError(f"model must be a keras.Model, got {type(model).__name__}")
    if not model.built:
        raise CerebroValueError(
            f"model {model.name!r} of model_id {model_id!r} is not built; give it an "
            "Input (functional API or Sequential with keras.Input) or call it on data once"
        )
    kwargs = estimator.compile_kwargs()
    optimizer = kwargs["optimizer"]
    if isinstance(optimizer, keras.optimizers.Optimizer) and optimizer.built:
        # Already built for other variables (e.g. shared between estimators): use a fresh copy.
        kwargs["optimizer"] = type(optimizer).from_config(optimizer.get_config())
    model.compile(**kwargs)
    model.optimizer.build(model.trainable_variables)
    save_checkpoint(model, store, url)
    logger.debug("wrote the initial checkpoint of %s to %s", model_id, url)
    return url


def save_checkpoint(model: keras.Model, store: Store, url: str) -> None:
    """Save ``model`` (with its optimizer state) to ``url`` atomically as a ``.keras`` file."""
    _check_url(url)
    with store.local_write(url) as path:
        model.save(path)


def checkpoint_token(store: Store, url: str) -> tuple[int, int | None]:
    """``(size, mtime_ns)`` of a checkpoint: tells whether the file changed since it was seen.

    Raises:
        StoreError: there is no file at ``url``.
    """
    import pyarrow.fs as pafs

    info = store.filesystem.get_file_info(store.to_fs_path(url))
    if info.type != pafs.FileType.File:
        raise StoreError(f"checkpoint {url} does not exist (or is not a file)")
    return int(info.size), info.mtime_ns


def load_checkpoint(
    store: Store, url: str, custom_objects: dict[str, Any] | None = None, safe_mode: bool = True
) -> keras.Model:
    """Build a compiled model from the checkpoint at ``url``.

    Keras' safe mode (no deserialised lambdas: loading a file runs no code from it) is on
    unless ``safe_mode=False``, for models with ``Lambda`` layers from a trusted source.

    Raises:
        StoreError: the file is missing or corrupt, Keras cannot rebuild the model from it
            (e.g. a custom layer missing from ``custom_objects``), or it holds a model saved
            without compiling.
    """
    import keras

    _check_url(url)
    checkpoint_token(store, url)
    with store.local_read(url) as path:
        _check_archive(path, url)
        try:
            model = keras.saving.load_model(
                path, custom_objects=custom_objects, compile=True, safe_mode=safe_mode
            )
        except (zipfile.BadZipFile, KeyError) as e:  # KeyError: a zip without Keras' members
            raise StoreError(f"checkpoint {url} is not a valid .keras archive: {e}") from e
        except (ValueError, TypeError) as e:
            raise StoreError(
                f"cannot build a model from checkpoint {url}: {e} (custom layers, losses and "
                "metrics must be given as SparkEstimator(custom_objects=...))"
            ) from e
    if getattr(model, "optimizer", None) is None:
        raise StoreError(
            f"checkpoint {url} holds a model without an optimizer; checkpoints must be written "
            "by create_initial_checkpoint / save_checkpoint from a compiled model"
        )
    if not model.optimizer.built:
        model.optimizer.build(model.trainable_variables)
    return model


def _state_variables(model: keras.Model) -> list[Any]:
    """The variables a state file holds, in a fixed order: the model's, then the optimizer's."""
    optimizer = getattr(model, "optimizer", None)
    return list(model.variables) + (list(optimizer.variables) if optimizer is not None else [])


def save_state(model: keras.Model, store: Store, url: str) -> None:
    """Write the variables of ``model`` and its optimizer to state file ``url``, atomically.

    Layout: a magic line, an 8-byte little-endian header length, a JSON header listing each
    variable's path, dtype, shape and offset, then the arrays' bytes (64-byte aligned).
    """
    _check_url(url, (STATE_SUFFIX,))
    variables = _state_variables(model)
    arrays = [np.asarray(v.numpy(), order="C") for v in variables]  # 0-d stays 0-d
    entries, offset = [], 0
    for v, a in zip(variables, arrays):
        offset = -(-offset // _ALIGN) * _ALIGN
        entries.append(
            {"path": v.path, "dtype": a.dtype.str, "shape": list(a.shape), "offset": offset}
        )
        offset += a.nbytes
    header = json.dumps({"variables": entries}).encode()
    start = -(-(len(_STATE_MAGIC) + 8 + len(header)) // _ALIGN) * _ALIGN
    buf = bytearray(start + offset)
    buf[: len(_STATE_MAGIC)] = _STATE_MAGIC
    buf[len(_STATE_MAGIC) : len(_STATE_MAGIC) + 8] = len(header).to_bytes(8, "little")
    buf[len(_STATE_MAGIC) + 8 : len(_STATE_MAGIC) + 8 + len(header)] = header
    for e, a in zip(entries, arrays):
        at = start + e["offset"]
        buf[at : at + a.nbytes] = a.reshape(-1).view(np.uint8).data
    store.write_bytes(url, buf)


def _read_state(store: Store, url: str) -> list[np.ndarray]:
    try:
        data = store.read_bytes(url)
    except FileNotFoundError:
        raise StoreError(f"checkpoint {url} does not exist (or is not a file)") from None
    n = len(_STATE_MAGIC)
    if data[:n] != _STATE_MAGIC or len(data) < n + 8:
        raise StoreError(f"state file {url} is not a Cerebro state file (corrupt or truncated)")
    size = int.from_bytes(data[n : n + 8], "little")
    try:
        entries = json.loads(data[n + 8 : n + 8 + size])["variables"]
    except (ValueError, KeyError, TypeError) as e:
        raise StoreError(f"state file {url} has a corrupt header: {e}") from e
    start = -(-(n + 8 + size) // _ALIGN) * _ALIGN
    arrays = []
    for e in entries:
        dtype, shape = np.dtype(e["dtype"]), tuple(e["shape"])
        count = int(np.prod(shape, dtype=np.int64))
        at = start + e["offset"]
        if at + count * dtype.itemsize > len(data):
            raise StoreError(f"state file {url} is truncated (variable {e['path']})")
        arrays.append(np.frombuffer(data, dtype, count, at).reshape(shape))
    return arrays


def load_state(model: keras.Model, store: Store, url: str) -> bool:
    """Load the weights and optimizer variables of checkpoint ``url`` into built ``model``.

    ``url`` is a state file (:func:`save_state`) or a ``.keras`` archive.

    Returns:
        True when every variable was restored; False when the file does not fit the model
        (other architecture or optimizer; nothing is changed for a state file): then build the
        model anew with :func:`load_checkpoint`.

    Raises:
        StoreError: the file is missing, corrupt or of another kind.
    """
    _check_url(url, (".keras", STATE_SUFFIX))
    if model.optimizer is not None and not model.optimizer.built:
        model.optimizer.build(model.trainable_variables)
    if not url.endswith(STATE_SUFFIX):
        return _load_keras_state(model, store, url)
    arrays = _read_state(store, url)
    variables = _state_variables(model)
    fits = len(arrays) == len(variables) and all(
        tuple(v.shape) == a.shape and np.dtype(v.dtype) == a.dtype
        for v, a in zip(variables, arrays)
    )
    if not fits:
        logger.info("state file %s does not fit the cached model %s", url, model.name)
        return False
    for v, a in zip(variables, arrays):
        v.assign(a)
    return True


def _load_keras_state(model: keras.Model, store: Store, url: str) -> bool:
    """:func:`load_state` for a ``.keras`` archive.

    Reads the checkpoint's variables member into a local ``.weights.h5`` file and loads that
    with ``model.load_weights``: in this Keras version loading straight from the ``.keras`` zip
    restores the same variables (optimizer included) but seeks inside the zip for every array,
    which is about twice as slow for a 10^6-parameter model.
    """
    tmpdir = tempfile.mkdtemp(prefix="cerebro-state-")
    try:
        with store.local_read(url) as path:
            _check_archive(path, url)
            target = path
            try:
                with zipfile.ZipFile(path) as zf:
                    if _WEIGHTS_MEMBER in zf.namelist():
                        target = os.path.join(tmpdir, "state.weights.h5")
                        with zf.open(_WEIGHTS_MEMBER) as src, open(target, "wb") as dst:
                            shutil.copyfileobj(src, dst, 1 << 22)
            except zipfile.BadZipFile as e:
                raise StoreError(f"checkpoint {url} is not a valid .keras archive: {e}") from e
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                try:
                    model.load_weights(target)
                except ValueError as e:
                    logger.info("checkpoint %s does not fit the cached model: %s", url, e)
                    return False
    finally:
        shutil.rmtree(tmpdir, ignore_errors=True)
    skipped = [w for w in caught if _SKIP_WARNING in str(w.message)]
    for w in caught:
        if w not in skipped:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    if skipped:
        logger.info("checkpoint %s does not fit the cached model: %s", url, skipped[0].message)
        return False
    return True
