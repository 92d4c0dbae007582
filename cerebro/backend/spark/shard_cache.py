"""Where a worker keeps its data partition: in memory, or in a local disk cache.

A worker holds its train and validation shard for the whole run. When they fit in its share of
the host's memory it reads them into numpy arrays (the fast path); otherwise it writes them,
chunk by chunk, to ``.npy`` files in a private folder under the executor's local directory and
opens them memory-mapped, so the operating system pages the data in as batches need it. The
choice is ``SparkBackend(data_cache="auto" | "memory" | "disk")``; for ``"auto"``,
:func:`choose_cache` decides from the dataset metadata before anything is read.

This module has no Spark or TensorFlow in it.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import weakref
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from cerebro.exceptions import CerebroValueError, ColumnError

if TYPE_CHECKING:
    from cerebro.storage import Store
    from cerebro.storage.dataset import DatasetMetadata

logger = logging.getLogger(__name__)

#: The values of ``SparkBackend(data_cache=...)``.
DATA_CACHE_MODES = ("auto", "memory", "disk")
#: The share of a host's available memory that the workers on it may fill with their shards.
MEMORY_FRACTION = 0.5
#: About how many bytes the disk cache reads from the store at a time.
CHUNK_BYTES = 64 << 20
#: Where a Spark executor's Python workers find the executor's local directories.
LOCAL_DIRS_ENV = "SPARK_LOCAL_DIRS"


def check_data_cache(value: Any) -> str:
    """``value`` if it is a valid ``data_cache`` mode.

    Raises:
        CerebroValueError: anything but ``"auto"``, ``"memory"`` or ``"disk"``.
    """
    if not isinstance(value, str) or value not in DATA_CACHE_MODES:
        raise CerebroValueError(f"data_cache must be one of {DATA_CACHE_MODES}, got {value!r}")
    return value


def choose_cache(
    mode: str,
    shard_bytes: int,
    available_bytes: int | None,
    workers_on_host: int,
    fraction: float = MEMORY_FRACTION,
) -> str:
    """Where a worker keeps its shards: ``"memory"`` or ``"disk"``.

    ``"memory"`` and ``"disk"`` are taken as asked. ``"auto"`` keeps the shards in memory when
    their estimated size fits the worker's budget, ``fraction`` of the host's available memory
    shared equally by the workers on that host, and on disk otherwise. When the available
    memory is unknown (no ``/proc/meminfo``), it keeps them in memory, as Cerebro always did.

    Args:
        mode: ``"auto"``, ``"memory"`` or ``"disk"``.
        shard_bytes: the estimated bytes of the worker's train and validation shards.
        available_bytes: memory available on the host, or None if unknown.
        workers_on_host: how many workers share the host (at least 1 is assumed).
        fraction: the share of the available memory all workers on the host may use.
    """
    check_data_cache(mode)
    if mode != "auto":
        return mode
    if available_bytes is None:
        return "memory"
    budget = fraction * available_bytes / max(workers_on_host, 1)
    return "memory" if shard_bytes <= budget else "disk"


def available_memory(meminfo: str = "/proc/meminfo") -> int | None:
    """Bytes of memory available on this host (Linux' ``MemAvailable``), or None if unknown."""
    try:
        with open(meminfo, encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    value, *unit = line.split()[1:]
                    return int(value) * (1024 if unit == ["kB"] else 1)
    except (OSError, ValueError):
        logger.debug("cannot read %s", meminfo, exc_info=True)
    return None


def shard_nbytes(
    metadata: DatasetMetadata,
    shard: int,
    num_shards: int,
    columns: Sequence[str],
    splits: Sequence[str] = ("train", "val"),
) -> int:
    """Estimated in-memory bytes of shard ``shard`` of ``splits``, from the metadata alone."""
    row = sum(metadata.columns[c].row_nbytes for c in columns)
    return sum(
        metadata.shard_sizes(s, num_shards)[shard] * row for s in splits if s in metadata.splits
    )


def spark_local_dir() -> str | None:
    """The first of the executor's local directories (``SPARK_LOCAL_DIRS``) that exists."""
    for d in os.environ.get(LOCAL_DIRS_ENV, "").split(","):
        if d.strip() and os.path.isdir(d.strip()):
            return d.strip()
    return None


class DiskShardCache:
    """Shards kept as memory-mapped ``.npy`` files in a private temporary folder.

    The folder (``cerebro-shards-*``) is made on the first :meth:`load` under ``parent`` (the
    executor's local directory; default: ``tempfile``'s), and :meth:`close` deletes it; use
    the cache as a context manager so that happens on errors too.

    Args:
        parent: where to make the folder; None for the system's temporary directory.
        chunk_bytes: about how many bytes to read from the store at a time.
    """

    def __init__(self, parent: str | None = None, *, chunk_bytes: int = CHUNK_BYTES) -> None:
        self.parent = parent
        self.chunk_bytes = chunk_bytes
        self.path: str | None = None
        self._finalizer: Any = None

    def __enter__(self) -> DiskShardCache:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def load(
        self,
        store: Store,
        split: str,
        shard: int,
        num_shards: int,
        columns: Sequence[str],
        *,
        metadata: DatasetMetadata,
    ) -> dict[str, np.ndarray]:
        """Copy one shard of ``split`` to the cache and return its columns memory-mapped.

        The shard is read in chunks of about ``chunk_bytes`` (never whole), each column
        written to a temporary name and renamed into place when complete. The arrays are
        read-only ``numpy.memmap`` objects with the dtypes and shapes
        :func:`~cerebro.storage.dataset.read_shard` would return.
        """
        from cerebro.storage.dataset import iter_shard

        columns = list(columns)
        row_bytes = sum(metadata.columns[c].row_nbytes for c in columns if c in metadata.columns)
        chunks = iter_shard(  # checks the arguments before anything is read
            store,
            split,
            shard,
            num_shards,
            columns,
            metadata=metadata,
            chunk_rows=max(1, self.chunk_bytes // max(row_bytes, 1)),
        )
        rows = metadata.shard_sizes(split, num_shards)[shard]
        folder = self._folder()
        paths = {c: os.path.join(folder, f"{split}-{i:03d}.npy") for i, c in enumerate(columns)}
        out: dict[str, Any] = {}
        start = 0
        try:
            for chunk in chunks:
                n = 0
                for c, values in chunk.items():
                    if c not in out:
                        out[c] = np.lib.format.open_memmap(
                            paths[c] + ".tmp", "w+", values.dtype, (rows, *values.shape[1:])
                        )
                    elif values.shape[1:] != out[c].shape[1:]:
                        raise ColumnError(
                            f"column {c!r} has values of shape {values.shape[1:]} in rows "
                            f"{start}+ of {split} shard {shard}, but {out[c].shape[1:]} before"
                        )
                    n = len(values)
                    out[c][start : start + n] = values
                start += n
            for mm in out.values():
                mm.flush()
            out.clear()  # unmap before the rename
            for c in columns:
                os.replace(paths[c] + ".tmp", paths[c])
        finally:
            out.clear()
        logger.debug("cached %s shard %d (%d rows) in %s", split, shard, rows, folder)
        return {c: np.load(paths[c], mmap_mode="r") for c in columns}

    def close(self) -> None:
        """Delete the cache folder and everything in it (safe to call twice)."""
        if self._finalizer is not None:
            self._finalizer()
            self._finalizer = None

    def _folder(self) -> str:
        if self.path is None:
            self.path = tempfile.mkdtemp(prefix="cerebro-shards-", dir=self.parent)
            self._finalizer = weakref.finalize(self, _remove, self.path)
        return self.path


def _remove(path: str) -> None:
    try:
        shutil.rmtree(path)
    except FileNotFoundError:
        pass
    except OSError as e:
        logger.warning("could not delete the shard cache %s: %s", path, e)
