"""TensorBoard logs of each model (driver side): per-epoch scalars and HParams hyperparameters.

Each model's events go to ``store.get_logs_path(model_id)``, one run per model, so
``tensorboard --logdir <store>/logs`` compares all models of a search and the HParams dashboard
lists them with their hyperparameters. TensorBoard infers the hyperparameter types and domains
and the metric columns from all runs together, so no experiment-wide config is written (one
written per model would hide the hyperparameters of models that have other keys).

Events are written with TensorBoard's own record writer and summary protos (no TensorFlow
needed) to a local staging file; after every write the file is flushed and copied atomically
into the store, so the store never holds a torn event file and nothing is lost if the driver
dies. One file stays open per model (:class:`TensorBoardLogger`): a model's folder holds one
event file instead of one per epoch, and a write costs about 1 ms instead of 4 ms.
"""

from __future__ import annotations

import atexit
import itertools
import logging
import numbers
import os
import shutil
import socket
import tempfile
import threading
import time
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from cerebro.exceptions import CerebroTypeError, CerebroValueError

if TYPE_CHECKING:
    from cerebro.storage import Store

logger = logging.getLogger(__name__)

__all__ = ["TensorBoardLogger", "write_epoch_scalars", "write_hparams", "close_loggers"]

_file_counter = itertools.count()


@dataclass
class _EventFile:
    local_path: str
    url: str
    handle: Any  # tensorboard RecordWriter over a local binary file


class TensorBoardLogger:
    """Writes the TensorBoard event files of the models of one store, one open file per model.

    Use it as a context manager or call :meth:`close`; every write is already flushed and
    copied into the store, so closing only releases the local files.

    Args:
        store: the store whose ``logs`` folder receives the events.
        max_open: how many models keep an open file; the least recently written is closed
            (its next write starts a new event file in the same folder, which TensorBoard reads
            as one run).
    """

    def __init__(self, store: Store, *, max_open: int = 64) -> None:
        if isinstance(max_open, bool) or not isinstance(max_open, int) or max_open < 1:
            raise CerebroValueError(f"max_open must be an int >= 1, got {max_open!r}")
        self.store = store
        self.max_open = max_open
        self._files: OrderedDict[str, _EventFile] = OrderedDict()
        self._staging = tempfile.mkdtemp(prefix="cerebro-tb-")
        self._lock = threading.Lock()
        self._closed = False

    # ------------------------------------------------------------------ writing
    def write_epoch_scalars(self, model_id: str, epoch: int, metrics: Mapping[str, Any]) -> None:
        """Log one value per metric at step ``epoch`` (tags are the metric names as given).

        Raises:
            CerebroValueError / CerebroTypeError: a bad epoch, metric name or value.
        """
        from tensorboard.compat.proto import event_pb2, summary_pb2

        if isinstance(epoch, bool) or not isinstance(epoch, numbers.Integral) or epoch < 0:
            raise CerebroValueError(f"epoch must be an int >= 0, got {epoch!r}")
        if not isinstance(metrics, Mapping) or not metrics:
            raise CerebroValueError(
                f"metrics must be a non-empty dict of name -> number, got {metrics!r}"
            )
        event = event_pb2.Event(wall_time=time.time(), step=int(epoch))
        for name, value in metrics.items():
            if not isinstance(name, str) or not name:
                raise CerebroTypeError(f"metric names must be non-empty strings, got {name!r}")
            if isinstance(value, bool) or not isinstance(value, numbers.Real):
                raise CerebroTypeError(f"metric {name!r} must be a number, got {value!r}")
            # A plain ``simple_value``: TensorBoard's scalar dashboard and every event reader
            # (EventAccumulator.Scalars included) understand it.
            event.summary.value.append(
                summary_pb2.Summary.Value(tag=name, simple_value=float(value))
            )
        self._write(model_id, event)

    def write_hparams(
        self,
        model_id: str,
        params: Mapping[str, Any],
        metric_names: Sequence[str] | None = None,
    ) -> None:
        """Log the model's hyperparameters for TensorBoard's HParams dashboard.

        Numbers, strings and booleans are logged as they are (numpy scalars as numbers); other
        values (None, lists, tuples) as their ``repr``. Write this before the epoch scalars.

        Args:
            model_id: the model (its run in TensorBoard; also the HParams trial id).
            params: hyperparameter name -> value.
            metric_names: the scalar tags this model reports (checked to be names); the
                dashboard lists every scalar tag of the runs as a metric column.
        """
        from tensorboard.compat.proto import event_pb2
        from tensorboard.plugins.hparams.summary_v2 import hparams_pb

        if not isinstance(params, Mapping):
            raise CerebroTypeError(f"params must be a dict of name -> value, got {params!r}")
        clean: dict[str, bool | float | str] = {}
        for name, value in params.items():
            if not isinstance(name, str) or not name:
                raise CerebroTypeError(f"hyperparameter names must be strings, got {name!r}")
            clean[name] = _hparam_value(value)
        if metric_names is not None:
            if isinstance(metric_names, str) or not all(
                isinstance(m, str) and m for m in metric_names
            ):
                raise CerebroTypeError(
                    f"metric_names must be a list of metric names, got {metric_names!r}"
                )
        summary = hparams_pb(clean, trial_id=model_id)
        self._write(model_id, event_pb2.Event(wall_time=time.time(), step=0, summary=summary))

    def _write(self, model_id: str, event: Any) -> None:
        with self._lock:
            if self._closed:
                raise CerebroValueError("this TensorBoardLogger is closed")
            f = self._files.get(model_id) or self._open(model_id)
            self._files.move_to_end(model_id)
            f.handle.write(event.SerializeToString())
            f.handle.flush()
            self.store.upload_file(f.local_path, f.url)
            while len(self._files) > self.max_open:
                _, old = self._files.popitem(last=False)
                self._close_file(old)

    def _open(self, model_id: str) -> _EventFile:
        from tensorboard.compat.proto import event_pb2
        from tensorboard.summary.writer.record_writer import RecordWriter

        logs_url = self.store.get_logs_path(model_id)  # validates model_id
        name = (
            f"events.out.tfevents.{int(time.time()):010d}.{socket.gethostname()}."
            f"{os.getpid()}.{next(_file_counter)}"
        )
        local_dir = os.path.join(self._staging, model_id)
        os.makedirs(local_dir, exist_ok=True)
        local = os.path.join(local_dir, name)
        handle = RecordWriter(open(local, "wb"))  # noqa: SIM115 - closed in _close_file
        first = event_pb2.Event(wall_time=time.time(), file_version="brain.Event:2")
        handle.write(first.SerializeToString())
        f = _EventFile(local_path=local, url=f"{logs_url}/{name}", handle=handle)
        self._files[model_id] = f
        return f

    # ------------------------------------------------------------------ closing
    @staticmethod
    def _close_file(f: _EventFile) -> None:
        f.handle.close()
        try:
            os.remove(f.local_path)
        except OSError:
            logger.debug("could not remove %s", f.local_path, exc_info=True)

    def close(self, model_id: str | None = None) -> None:
        """Close one model's event file, or (``model_id=None``) all of them and the logger."""
        with self._lock:
            if model_id is not None:
                f = self._files.pop(model_id, None)
                if f is not None:
                    self._close_file(f)
                return
            while self._files:
                self._close_file(self._files.popitem()[1])
            self._closed = True
            shutil.rmtree(self._staging, ignore_errors=True)

    def __enter__(self) -> TensorBoardLogger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _hparam_value(value: Any) -> bool | float | str:
    if isinstance(value, (bool, str)):
        return value
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        return float(value)
    try:  # numpy scalars of bool/str kinds
        import numpy as np

        if isinstance(value, np.generic):
            return _hparam_value(value.item())
    except ImportError:  # pragma: no cover - numpy is a dependency
        pass
    return repr(value)


# ---------------------------------------------------------------------- module-level API
_loggers: dict[Store, TensorBoardLogger] = {}
_loggers_lock = threading.Lock()


def _logger_for(store: Store) -> TensorBoardLogger:
    with _loggers_lock:
        tb = _loggers.get(store)
        if tb is None or tb._closed:
            tb = _loggers[store] = TensorBoardLogger(store)
        return tb


def write_epoch_scalars(
    store: Store, model_id: str, epoch: int, metrics: Mapping[str, Any]
) -> None:
    """Log a model's metrics at step ``epoch`` in ``store.get_logs_path(model_id)``.

    Uses one shared :class:`TensorBoardLogger` per store (files stay open between epochs; call
    :func:`close_loggers` when a model or the search is done, or rely on the exit hook).
    """
    _logger_for(store).write_epoch_scalars(model_id, epoch, metrics)


def write_hparams(
    store: Store,
    model_id: str,
    params: Mapping[str, Any],
    metric_names: Sequence[str] | None = None,
) -> None:
    """Log a model's hyperparameters for the HParams dashboard (see
    :meth:`TensorBoardLogger.write_hparams`)."""
    _logger_for(store).write_hparams(model_id, params, metric_names)


def close_loggers(store: Store | None = None, model_id: str | None = None) -> None:
    """Close the shared loggers' files: of one model, of one store, or (no arguments) all."""
    with _loggers_lock:
        stores = [store] if store is not None else list(_loggers)
        for s in stores:
            tb = _loggers.get(s)
            if tb is None:
                continue
            tb.close(model_id)
            if model_id is None:
                del _loggers[s]


atexit.register(close_loggers)
