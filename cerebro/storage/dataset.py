"""Prepared datasets: the metadata format, the fingerprint format and the shard reader.

``backend.prepare_data`` (see :mod:`cerebro.backend.spark.prepare`) writes the training and
validation splits as plain Parquet files (scalars and lists of numbers, which Petastorm's
``make_batch_reader`` reads) and, last, a JSON metadata file that describes them: the columns
with their dtype and shape, every file with its row count and row-group row counts, and a
fingerprint of the input. The metadata file is the commit marker: data without it is not a
Cerebro dataset.

A worker reads its shard with :func:`read_shard` (or in bounded chunks with :func:`iter_shard`).
Shard ``i`` of ``W`` is the global row range ``[i*N//W, (i+1)*N//W)`` of the split's files
concatenated in order, so every row is read by exactly one worker and the shards differ by at
most one row, for any ``W``; only the row groups that overlap the range are read. Data written
by Petastorm's ``materialize_dataset`` or by plain Spark (no Cerebro metadata) is accepted:
:func:`load_metadata` infers the metadata from the Parquet footers and the pickled Petastorm
``Unischema``, and :func:`read_shard` decodes Petastorm's
``NdarrayCodec``/``CompressedNdarrayCodec``/``ScalarCodec`` columns.

This module uses pyarrow only; it never imports Spark or TensorFlow.
"""

from __future__ import annotations

import contextlib
import dataclasses
import difflib
import hashlib
import io
import json
import logging
import math
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from cerebro.exceptions import CerebroTypeError, CerebroValueError, ColumnError, StoreError

if TYPE_CHECKING:
    from cerebro.storage._base import Store

logger = logging.getLogger(__name__)

__all__ = [
    "FORMAT_VERSION",
    "SPLITS",
    "ColumnSpec",
    "DatasetMetadata",
    "ParquetFileSpec",
    "SplitSpec",
    "check_column_names",
    "compute_fingerprint",
    "iter_shard",
    "load_metadata",
    "read_shard",
    "shard_bounds",
    "shard_sizes",
    "suggest_column",
]

#: Version of the metadata JSON layout; readers refuse files from a newer version.
FORMAT_VERSION = 1
#: Value of the ``format`` key that marks a Cerebro dataset metadata file.
METADATA_FORMAT = "cerebro-dataset"
#: Prefix of fingerprints computed by :func:`compute_fingerprint` (bumped if the recipe changes).
FINGERPRINT_PREFIX = "cerebro-fp1:"
#: The splits a prepared dataset has.
SPLITS = ("train", "val")

# Petastorm keeps the pickled Unischema under this key of ``_common_metadata``.
_UNISCHEMA_KEY = b"dataset-toolkit.unischema.v1"
_SUPPORTED_CODECS = ("NdarrayCodec", "CompressedNdarrayCodec", "ScalarCodec")
_NUMERIC_KINDS = "biuf"  # bool, signed int, unsigned int, float


# ---------------------------------------------------------------------------------- metadata
@dataclass(frozen=True)
class ColumnSpec:
    """One column of a prepared dataset.

    Attributes:
        name: the column name.
        dtype: numpy dtype name of the values (``"float64"``, ``"int32"``, ``"bool"`` ...).
        shape: shape of one row's value: ``()`` for a scalar, ``(n,)`` for an array or
            vector; ``-1`` marks a dimension that Petastorm data left open.
        source_type: the type the column had in the source (``"double"``, ``"array<float>"``,
            ``"vector"``, or a Parquet type for data prepared outside Cerebro).
        codec: the Petastorm codec of externally materialised data (``"NdarrayCodec"`` ...),
            ``None`` when the Parquet value is the value itself.
    """

    name: str
    dtype: str
    shape: tuple[int, ...] = ()
    source_type: str = ""
    codec: str | None = None

    @property
    def numpy_dtype(self) -> np.dtype:
        """The dtype as a ``numpy.dtype``."""
        return np.dtype(self.dtype)

    @property
    def row_nbytes(self) -> int:
        """Bytes one row of this column takes in memory (open dimensions count as 1)."""
        return self.numpy_dtype.itemsize * math.prod(max(d, 1) for d in self.shape)


@dataclass(frozen=True)
class ParquetFileSpec:
    """One Parquet file of a split: its name inside the split folder and its row counts."""

    name: str
    rows: int
    row_groups: tuple[int, ...]


@dataclass(frozen=True)
class SplitSpec:
    """One split (train or val): its files in reading order and the row count per shard.

    Attributes:
        total_rows: rows in the split.
        files: the files, in the order whose concatenation defines the global row numbers.
        shard_rows: rows of each shard for the ``num_workers`` the data was prepared for
            (empty for data prepared outside Cerebro).
    """

    total_rows: int
    files: tuple[ParquetFileSpec, ...]
    shard_rows: tuple[int, ...] = ()


@dataclass(frozen=True)
class DatasetMetadata:
    """What a prepared dataset holds; stored as JSON at ``store.get_data_metadata_path()``.

    Attributes:
        fingerprint: identifies the input content and preparation arguments.
        feature_columns: the feature columns, in order (empty if unknown).
        label_columns: the label columns, in order (empty if unknown).
        columns: every readable column by name, in order.
        splits: ``"train"`` and, where there is validation data, ``"val"``.
        num_workers: the number of shards the files were laid out for (``None`` if unknown).
        validation: the fraction or column name that made the split (``None`` if unknown).
        seed: the seed of the split (``None`` if unknown).
        created: ISO timestamp (UTC) of the preparation.
        cerebro_version: version of Cerebro that prepared the data.
        source: ``"cerebro"``, ``"petastorm"`` (Unischema found) or ``"parquet"``.
        format_version: version of the metadata layout.
    """

    fingerprint: str
    feature_columns: tuple[str, ...]
    label_columns: tuple[str, ...]
    columns: Mapping[str, ColumnSpec]
    splits: Mapping[str, SplitSpec]
    num_workers: int | None = None
    validation: float | str | None = None
    seed: int | None = None
    created: str | None = None
    cerebro_version: str | None = None
    source: str = "cerebro"
    format_version: int = FORMAT_VERSION

    # ------------------------------------------------------------------ queries
    def column_shapes(self) -> dict[str, tuple[int, ...]]:
        """Shape of one row's value per column (``()`` for scalars)."""
        return {name: c.shape for name, c in self.columns.items()}

    def column_dtypes(self) -> dict[str, np.dtype]:
        """numpy dtype per column."""
        return {name: c.numpy_dtype for name, c in self.columns.items()}

    def split_rows(self, split: str) -> int:
        """Rows in ``split`` (0 when the dataset has no such split)."""
        _check_split(split)
        spec = self.splits.get(split)
        return spec.total_rows if spec is not None else 0

    def shard_sizes(self, split: str, num_shards: int) -> list[int]:
        """Rows of each of ``num_shards`` shards of ``split``."""
        return shard_sizes(self.split_rows(split), num_shards)

    # ------------------------------------------------------------------ JSON
    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (the layout of the metadata file)."""
        return {
            "format": METADATA_FORMAT,
            "format_version": self.format_version,
            "fingerprint": self.fingerprint,
            "source": self.source,
            "feature_columns": list(self.feature_columns),
            "label_columns": list(self.label_columns),
            "columns": [
                {
                    "name": c.name,
                    "dtype": c.dtype,
                    "shape": list(c.shape),
                    "source_type": c.source_type,
                    "codec": c.codec,
                }
                for c in self.columns.values()
            ],
            "splits": {
                name: {
                    "total_rows": s.total_rows,
                    "shard_rows": list(s.shard_rows),
                    "files": [
                        {"name": f.name, "rows": f.rows, "row_groups": list(f.row_groups)}
                        for f in s.files
                    ],
                }
                for name, s in self.splits.items()
            },
            "num_workers": self.num_workers,
            "validation": self.validation,
            "seed": self.seed,
            "created": self.created,
            "cerebro_version": self.cerebro_version,
        }

    @classmethod
    def from_dict(cls, data: Any) -> DatasetMetadata:
        """Parse and check a dict made by :meth:`to_dict`.

        Raises:
            StoreError: the dict is not valid metadata (wrong format, a newer version,
                missing keys, wrong types, or row counts that do not add up).
        """
        try:
            return _metadata_from_dict(data)
        except StoreError:
            raise
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            raise StoreError(f"invalid dataset metadata: {type(e).__name__}: {e}") from e

    def with_columns(
        self, feature_columns: Sequence[str] | None, label_columns: Sequence[str] | None
    ) -> DatasetMetadata:
        """A copy whose feature and/or label columns are replaced (each must be a column)."""
        features = self.feature_columns
        labels = self.label_columns
        if feature_columns is not None:
            features = tuple(check_column_names("feature_columns", feature_columns, self.columns))
        if label_columns is not None:
            labels = tuple(check_column_names("label_columns", label_columns, self.columns))
        overlap = sorted(set(features) & set(labels))
        if overlap:
            raise ColumnError(
                f"feature_columns and label_columns must not overlap, both hold {overlap}"
            )
        return dataclasses.replace(self, feature_columns=features, label_columns=labels)


def _metadata_from_dict(data: Any) -> DatasetMetadata:
    if not isinstance(data, dict):
        raise StoreError(f"dataset metadata must be a JSON object, got {type(data).__name__}")
    if data.get("format") != METADATA_FORMAT:
        raise StoreError(
            f"not a Cerebro dataset metadata file: format is {data.get('format')!r}, "
            f"expected {METADATA_FORMAT!r}"
        )
    version = data["format_version"]
    if not isinstance(version, int) or version < 1:
        raise StoreError(f"dataset metadata has a bad format_version {version!r}")
    if version > FORMAT_VERSION:
        raise StoreError(
            f"dataset metadata has format_version {version}, newer than the {FORMAT_VERSION} "
            "this Cerebro reads: upgrade Cerebro or prepare the data again"
        )
    columns: dict[str, ColumnSpec] = {}
    for c in data["columns"]:
        shape = tuple(_int(d, "column shape", -1) for d in c["shape"])
        spec = ColumnSpec(
            name=_str(c["name"], "column name"),
            dtype=str(np.dtype(_str(c["dtype"], "column dtype"))),
            shape=shape,
            source_type=str(c.get("source_type") or ""),
            codec=c.get("codec"),
        )
        columns[spec.name] = spec
    splits: dict[str, SplitSpec] = {}
    for name, s in data["splits"].items():
        _check_split(name)
        files = []
        for f in s["files"]:
            groups = tuple(_int(g, "row group rows") for g in f["row_groups"])
            rows = _int(f["rows"], "file rows")
            if sum(groups) != rows:
                raise StoreError(
                    f"dataset metadata: file {f['name']!r} has {rows} rows but its row groups "
                    f"add up to {sum(groups)}"
                )
            files.append(ParquetFileSpec(_str(f["name"], "file name"), rows, groups))
        total = _int(s["total_rows"], "total_rows")
        if sum(f.rows for f in files) != total:
            raise StoreError(
                f"dataset metadata: split {name!r} has total_rows={total} but its files add up "
                f"to {sum(f.rows for f in files)}"
            )
        shard_rows = tuple(_int(r, "shard rows") for r in s.get("shard_rows", ()))
        if shard_rows and sum(shard_rows) != total:
            raise StoreError(
                f"dataset metadata: split {name!r} shard_rows add up to {sum(shard_rows)}, "
                f"not total_rows={total}"
            )
        splits[name] = SplitSpec(total, tuple(files), shard_rows)
    if "train" not in splits:
        raise StoreError("dataset metadata has no 'train' split")
    features = tuple(_str(c, "feature column") for c in data["feature_columns"])
    labels = tuple(_str(c, "label column") for c in data["label_columns"])
    for c in features + labels:
        if c not in columns:
            raise StoreError(f"dataset metadata names column {c!r} but does not describe it")
    return DatasetMetadata(
        fingerprint=_str(data["fingerprint"], "fingerprint"),
        feature_columns=features,
        label_columns=labels,
        columns=columns,
        splits=splits,
        num_workers=data.get("num_workers"),
        validation=data.get("validation"),
        seed=data.get("seed"),
        created=data.get("created"),
        cerebro_version=data.get("cerebro_version"),
        source=str(data.get("source", "cerebro")),
        format_version=version,
    )


def _int(value: Any, what: str, minimum: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise StoreError(f"dataset metadata: {what} must be an int >= {minimum}, got {value!r}")
    return value


def _str(value: Any, what: str) -> str:
    if not isinstance(value, str) or not value:
        raise StoreError(f"dataset metadata: {what} must be a non-empty string, got {value!r}")
    return value


def compute_fingerprint(
    *,
    row_count: int,
    row_hash_sum: int,
    schema: Sequence[tuple[str, str]],
    feature_columns: Sequence[str],
    label_columns: Sequence[str],
    validation: float | str,
    seed: int,
) -> str:
    """The fingerprint of a prepared dataset: its content and how it was prepared.

    Args:
        row_count: rows in the input.
        row_hash_sum: sum modulo 2**64 of a 64-bit hash of every row's used columns; a sum
            does not depend on the row order or partitioning.
        schema: ``(column, type)`` of every used column (features, labels, validation column).
        feature_columns, label_columns, validation, seed: the preparation arguments.

    Returns:
        ``"cerebro-fp1:"`` followed by a SHA-256 hex digest.
    """
    payload = {
        "rows": int(row_count),
        "hash_sum": int(row_hash_sum) % (1 << 64),
        "schema": [[str(n), str(t)] for n, t in schema],
        "features": list(feature_columns),
        "labels": list(label_columns),
        "validation": validation,
        "seed": int(seed),
    }
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"))
    return FINGERPRINT_PREFIX + hashlib.sha256(text.encode("utf-8")).hexdigest()


# ---------------------------------------------------------------------------------- shards
def shard_bounds(total_rows: int, shard: int, num_shards: int) -> tuple[int, int]:
    """Global row range ``[lo, hi)`` of shard ``shard`` of ``num_shards``."""
    return shard * total_rows // num_shards, (shard + 1) * total_rows // num_shards


def shard_sizes(total_rows: int, num_shards: int) -> list[int]:
    """Rows of each shard when ``total_rows`` rows are cut into ``num_shards`` shards."""
    if isinstance(num_shards, bool) or not isinstance(num_shards, int) or num_shards < 1:
        raise CerebroValueError(f"num_shards must be an int >= 1, got {num_shards!r}")
    bounds = (shard_bounds(total_rows, i, num_shards) for i in range(num_shards))
    return [hi - lo for lo, hi in bounds]


@dataclass(frozen=True)
class _Read:
    """Row groups ``row_groups`` of file ``file_index``; keep ``take`` rows after ``skip``."""

    file_index: int
    row_groups: list[int] = field(default_factory=list)
    skip: int = 0
    take: int = 0


def _plan_reads(files: Sequence[ParquetFileSpec], lo: int, hi: int) -> list[_Read]:
    """The row groups that overlap global rows ``[lo, hi)``, and what to keep of them."""
    plan: list[_Read] = []
    start = 0
    for index, f in enumerate(files):
        if start >= hi:
            break
        groups: list[int] = []
        first = last = None
        g_start = start
        for g, rows in enumerate(f.row_groups):
            g_end = g_start + rows
            if rows and g_end > lo and g_start < hi:
                groups.append(g)
                first = g_start if first is None else first
                last = g_end
            g_start = g_end
        if groups:
            plan.append(_Read(index, groups, max(lo - first, 0), min(hi, last) - max(lo, first)))
        start += f.rows
    return plan


def read_shard(
    store: Store,
    split: str,
    shard: int,
    num_shards: int,
    columns: Sequence[str] | None = None,
    *,
    metadata: DatasetMetadata | None = None,
) -> dict[str, np.ndarray]:
    """Read one shard of a prepared split into memory.

    Shard ``shard`` holds global rows ``[shard*N//num_shards, (shard+1)*N//num_shards)`` of the
    split's files concatenated in order, so ``num_shards`` shards hold every row exactly once
    and differ by at most one row, whatever ``num_workers`` the data was prepared for. Only the
    Parquet row groups that overlap the shard are read.

    Args:
        store: the store holding the prepared data.
        split: ``"train"`` or ``"val"``.
        shard: which shard, ``0 <= shard < num_shards``.
        num_shards: how many shards the split is cut into (the number of workers).
        columns: the columns to read (default: the feature and label columns, or every column
            when those are unknown).
        metadata: the dataset's metadata if already loaded (default: :func:`load_metadata`).

    Returns:
        Column name -> array: scalars have shape ``(n,)``, arrays ``(n, *shape)``, with the
        dtype of the metadata.

    Raises:
        CerebroValueError: bad ``split``/``shard``/``num_shards``, or the split has fewer rows
            than ``num_shards``.
        ColumnError: an unknown column, or a column whose values do not fit its metadata.
        StoreError: there is no such split, or the files changed since they were prepared.
    """
    plan = _plan_shard(store, split, shard, num_shards, columns, metadata)
    pieces: dict[str, list[np.ndarray]] = {n: [] for n in plan.names}
    for chunk in _iter_chunks(store, plan, None):
        for n, arr in chunk.items():
            pieces[n].append(arr)
    out = {
        n: parts[0] if len(parts) == 1 else np.concatenate(parts) for n, parts in pieces.items()
    }
    for n, arr in out.items():
        if len(arr) != plan.rows:  # cannot happen unless the files lie about their row counts
            raise StoreError(f"read {len(arr)} rows of column {n!r} for a shard of {plan.rows}")
    return out


def iter_shard(
    store: Store,
    split: str,
    shard: int,
    num_shards: int,
    columns: Sequence[str] | None = None,
    *,
    metadata: DatasetMetadata | None = None,
    chunk_rows: int = 65536,
) -> Iterator[dict[str, np.ndarray]]:
    """Read one shard of a prepared split in consecutive chunks of at most ``chunk_rows`` rows.

    The same rows, columns and checks as :func:`read_shard` (the chunks concatenated equal its
    result), but only one chunk is in memory at a time, for shards too big to hold whole (a
    worker's disk cache writes them chunk by chunk). Arguments are checked before anything is
    read.

    Args:
        store, split, shard, num_shards, columns, metadata: as for :func:`read_shard`.
        chunk_rows: the most rows one chunk holds, an int >= 1.

    Returns:
        An iterator of dicts column name -> array of up to ``chunk_rows`` rows.

    Raises:
        The errors of :func:`read_shard`; CerebroValueError for a bad ``chunk_rows``.
    """
    if isinstance(chunk_rows, bool) or not isinstance(chunk_rows, int) or chunk_rows < 1:
        raise CerebroValueError(f"chunk_rows must be an int >= 1, got {chunk_rows!r}")
    plan = _plan_shard(store, split, shard, num_shards, columns, metadata)
    return _counted(_iter_chunks(store, plan, chunk_rows), plan)


@dataclass(frozen=True)
class _ShardPlan:
    """What reading one shard takes: the checked columns, the split's files and the reads."""

    meta: DatasetMetadata
    files: tuple[ParquetFileSpec, ...]
    split_url: str
    names: list[str]
    reads: list[_Read]
    rows: int


def _plan_shard(
    store: Store,
    split: str,
    shard: int,
    num_shards: int,
    columns: Sequence[str] | None,
    metadata: DatasetMetadata | None,
) -> _ShardPlan:
    _check_split(split)
    for name, value in (("num_shards", num_shards), ("shard", shard)):
        if isinstance(value, bool) or not isinstance(value, int):
            raise CerebroTypeError(f"{name} must be an int, got {value!r}")
    if num_shards < 1:
        raise CerebroValueError(f"num_shards must be >= 1, got {num_shards}")
    if not 0 <= shard < num_shards:
        raise CerebroValueError(f"shard must be in [0, {num_shards}), got {shard}")
    meta = metadata if metadata is not None else load_metadata(store)
    spec = meta.splits.get(split)
    if spec is None:
        raise StoreError(f"the dataset in {store.prefix_path} has no {split!r} split")
    if columns is None:
        names = list(meta.feature_columns) + list(meta.label_columns) or list(meta.columns)
    else:
        names = check_column_names("columns", columns, meta.columns)
    if spec.total_rows < num_shards:
        raise CerebroValueError(
            f"the {split!r} split has {spec.total_rows} rows, fewer than num_shards="
            f"{num_shards}: every worker needs at least one row; use fewer workers or more data"
        )
    lo, hi = shard_bounds(spec.total_rows, shard, num_shards)
    split_url = store.get_train_data_path() if split == "train" else store.get_val_data_path()
    return _ShardPlan(meta, spec.files, split_url, names, _plan_reads(spec.files, lo, hi), hi - lo)


def _iter_chunks(
    store: Store, plan: _ShardPlan, chunk_rows: int | None
) -> Iterator[dict[str, np.ndarray]]:
    """The shard's rows in order: per file (``chunk_rows=None``) or in chunks of that many."""
    for read in plan.reads:
        f = plan.files[read.file_index]
        url = plan.split_url + "/" + f.name
        for table in _iter_row_groups(store, url, f, read, plan.names, chunk_rows):
            yield {n: _to_numpy(table.column(n), plan.meta.columns[n], f.name) for n in plan.names}


def _counted(
    chunks: Iterator[dict[str, np.ndarray]], plan: _ShardPlan
) -> Iterator[dict[str, np.ndarray]]:
    seen = 0
    for chunk in chunks:
        seen += len(next(iter(chunk.values()))) if chunk else 0
        yield chunk
    if seen != plan.rows:  # cannot happen unless the files lie about their row counts
        raise StoreError(f"read {seen} rows for a shard of {plan.rows}")


@contextlib.contextmanager
def _open_parquet(store: Store, url: str, spec: ParquetFileSpec) -> Iterator[pq.ParquetFile]:
    """The file, after checking its row groups against the metadata; read errors -> StoreError."""
    path = store.to_fs_path(url)
    try:
        with store.filesystem.open_input_file(path) as f:
            pf = pq.ParquetFile(f)
            actual = tuple(pf.metadata.row_group(i).num_rows for i in range(pf.num_row_groups))
            if actual != spec.row_groups:
                raise StoreError(
                    f"{url} changed since it was prepared: its row groups hold {list(actual)} "
                    f"rows, the metadata says {list(spec.row_groups)}; prepare the data again"
                )
            yield pf
    except StoreError:
        raise
    except FileNotFoundError as e:
        raise StoreError(f"{url} is missing: the prepared data is incomplete ({e})") from e
    except (OSError, pa.ArrowException) as e:
        raise StoreError(f"cannot read {url}: {type(e).__name__}: {e}") from e


def _read_row_groups(
    store: Store, url: str, spec: ParquetFileSpec, groups: list[int], columns: list[str]
) -> pa.Table:
    with _open_parquet(store, url, spec) as pf:
        return pf.read_row_groups(groups, columns=columns, use_threads=True)


def _iter_row_groups(
    store: Store,
    url: str,
    spec: ParquetFileSpec,
    read: _Read,
    columns: list[str],
    chunk_rows: int | None,
) -> Iterator[pa.Table]:
    """Rows ``[read.skip, read.skip + read.take)`` of the row groups ``read.row_groups``: in
    one table (``chunk_rows=None``) or streamed in tables of at most ``chunk_rows`` rows."""
    if chunk_rows is None:
        yield _read_row_groups(store, url, spec, read.row_groups, columns).slice(
            read.skip, read.take
        )
        return
    end = read.skip + read.take
    pos = 0
    with _open_parquet(store, url, spec) as pf:
        batches = pf.iter_batches(
            batch_size=chunk_rows, row_groups=read.row_groups, columns=columns, use_threads=True
        )
        for batch in batches:
            n = batch.num_rows
            a, b = max(read.skip - pos, 0), min(end - pos, n)
            pos += n
            if b > a:
                yield pa.Table.from_batches([batch.slice(a, b - a)])
            if pos >= end:
                return


def _to_numpy(column: pa.ChunkedArray, spec: ColumnSpec, where: str) -> np.ndarray:
    """Convert one column of a table to ``(n, *spec.shape)`` values of ``spec.dtype``."""
    if column.null_count:
        raise ColumnError(f"column {spec.name!r} has {column.null_count} null values in {where}")
    if spec.codec in ("NdarrayCodec", "CompressedNdarrayCodec"):
        arr = column.combine_chunks() if column.num_chunks != 1 else column.chunk(0)
        values = _decode_ndarrays(arr, spec.codec, spec.shape)
    elif spec.codec not in (None, "ScalarCodec"):
        raise ColumnError(
            f"column {spec.name!r} uses Petastorm's {spec.codec}, which Cerebro cannot decode "
            f"(supported: {', '.join(_SUPPORTED_CODECS)})"
        )
    elif not spec.shape:
        values = column.to_numpy()
    else:
        arr = column.combine_chunks() if column.num_chunks != 1 else column.chunk(0)
        values = _list_to_numpy(arr, spec, where)
    row_shape = values.shape[1:]
    if len(row_shape) != len(spec.shape) or any(
        d not in (-1, a) for a, d in zip(row_shape, spec.shape)
    ):
        raise ColumnError(
            f"column {spec.name!r} has values of shape {values.shape[1:]} in {where}, the "
            f"metadata says {spec.shape}"
        )
    return values.astype(spec.numpy_dtype, copy=False)


def _list_to_numpy(arr: pa.Array, spec: ColumnSpec, where: str) -> np.ndarray:
    n = len(arr)
    if pa.types.is_fixed_size_list(arr.type):
        width = arr.type.list_size
    elif pa.types.is_list(arr.type) or pa.types.is_large_list(arr.type):
        offsets = np.asarray(arr.offsets)
        lengths = np.diff(offsets)
        width = int(lengths[0]) if n else int(math.prod(spec.shape))
        if n and not (lengths == width).all():
            raise ColumnError(
                f"array column {spec.name!r} has rows of {int(lengths.min())} to "
                f"{int(lengths.max())} elements in {where}; every row must have the same length"
            )
    else:
        raise ColumnError(f"column {spec.name!r} holds {arr.type} values in {where}, not arrays")
    flat = arr.flatten()
    if flat.null_count:
        raise ColumnError(
            f"array column {spec.name!r} has {flat.null_count} null elements in {where}"
        )
    return flat.to_numpy(zero_copy_only=False).reshape(n, width)


def _decode_ndarrays(arr: pa.Array, codec: str, shape: tuple[int, ...] = ()) -> np.ndarray:
    """Decode a binary column of ``np.save`` (or ``np.savez_compressed``) payloads."""
    n = len(arr)
    if codec == "NdarrayCodec" and n and pa.types.is_binary(arr.type):
        fast = _decode_npy_fixed(arr)
        if fast is not None:
            return fast
    items = []
    for value in arr.to_pylist():
        loaded = np.load(io.BytesIO(value), allow_pickle=False)
        items.append(loaded["arr"] if codec == "CompressedNdarrayCodec" else loaded)
    if not items:
        return np.empty((0, *(max(d, 0) for d in shape)))
    try:
        return np.stack(items)
    except ValueError as e:
        shapes = sorted({a.shape for a in items})
        raise ColumnError(f"ndarray values of different shapes {shapes[:5]}: {e}") from e


def _decode_npy_fixed(arr: pa.BinaryArray) -> np.ndarray | None:
    """All rows as one array without a Python loop, when every payload has the same header.

    ``np.save`` writes a header (magic, dtype, shape, order) and then the raw C-order data, so
    rows of one shape and dtype are equally long with identical headers; the data of all rows
    is then a strided view of the column's byte buffer. Returns None when that does not hold.
    """
    _validity, offsets_buf, data_buf = arr.buffers()
    offsets = np.frombuffer(offsets_buf, dtype=np.int32)[arr.offset : arr.offset + len(arr) + 1]
    lengths = np.diff(offsets)
    length = int(lengths[0])
    if length == 0 or not (lengths == length).all():
        return None
    raw = np.frombuffer(data_buf, dtype=np.uint8)[offsets[0] : offsets[-1]]
    rows = raw.reshape(len(arr), length)
    stream = io.BytesIO(rows[0].tobytes())
    fmt = np.lib.format
    try:
        version = fmt.read_magic(stream)
        if version == (1, 0):
            shape, fortran, dtype = fmt.read_array_header_1_0(stream)
        elif version == (2, 0):
            shape, fortran, dtype = fmt.read_array_header_2_0(stream)
        else:
            return None
    except ValueError:
        return None
    header = stream.tell()
    if fortran or dtype.hasobject or header + dtype.itemsize * math.prod(shape) != length:
        return None
    if not (rows[:, :header] == rows[0, :header]).all():
        return None
    data = np.ascontiguousarray(rows[:, header:])
    return data.view(dtype).reshape(len(arr), *shape)


# ---------------------------------------------------------------------------------- loading
def load_metadata(
    store: Store,
    *,
    feature_columns: Sequence[str] | None = None,
    label_columns: Sequence[str] | None = None,
) -> DatasetMetadata:
    """The metadata of the dataset prepared in ``store``.

    Reads Cerebro's metadata file. Where there is none but the training folder holds Parquet
    files (written by Petastorm's ``materialize_dataset`` or by plain Spark), the metadata is
    inferred from the Parquet footers and, for Petastorm data, the pickled ``Unischema`` in
    ``_common_metadata`` (its ``NdarrayCodec``/``ScalarCodec`` fields give dtype and shape).

    Args:
        store: the store.
        feature_columns, label_columns: the columns to use. Data prepared outside Cerebro does
            not say which columns are features and labels: pass them (else both are empty). For
            Cerebro data they replace the recorded ones; every name must be a column.

    Raises:
        StoreError: the metadata file is corrupt, or the store holds no prepared data.
        ColumnError: a named column does not exist or has a type Cerebro cannot read.
    """
    url = store.get_data_metadata_path()
    if store.exists(url):
        raw = store.read_json(url)
        try:
            meta = DatasetMetadata.from_dict(raw)
        except StoreError as e:
            raise StoreError(f"{url}: {e}") from e
    else:
        meta, unsupported = _infer_metadata(store)
        for name in list(feature_columns or ()) + list(label_columns or ()):
            if name in unsupported:
                raise ColumnError(f"column {name!r} {unsupported[name]}")
    if feature_columns is not None or label_columns is not None:
        meta = meta.with_columns(feature_columns, label_columns)
    return meta


def _data_files(store: Store, url: str) -> list[str]:
    """Sorted names of the Parquet data files in folder ``url`` (hidden and ``_`` files skip)."""
    names = [n for n in store.listdir(url) if not n.startswith(("_", "."))]
    dirs = [n for n in names if store.is_dir(url + "/" + n)]
    if dirs:
        raise StoreError(
            f"{url} holds sub-folders {dirs[:3]} (a partitioned dataset?); Cerebro reads flat "
            "folders of Parquet files: prepare the data with backend.prepare_data"
        )
    return names


def _describe_files(
    store: Store, url: str, names: Iterable[str]
) -> tuple[list[ParquetFileSpec], pa.Schema]:
    """Row counts of each file (from its footer) and the first file's Arrow schema."""
    files = []
    schema = None
    for name in names:
        try:
            with store.filesystem.open_input_file(store.to_fs_path(url + "/" + name)) as f:
                md = pq.ParquetFile(f).metadata
        except (OSError, pa.ArrowException) as e:
            raise StoreError(f"{url}/{name} is not a readable Parquet file: {e}") from e
        groups = tuple(md.row_group(i).num_rows for i in range(md.num_row_groups))
        files.append(ParquetFileSpec(name, md.num_rows, groups))
        if schema is None:
            schema = md.schema.to_arrow_schema()
    return files, schema


def _infer_metadata(store: Store) -> tuple[DatasetMetadata, dict[str, str]]:
    """Metadata of Parquet data without a Cerebro metadata file, and unreadable columns."""
    train_url = store.get_train_data_path()
    if not store.is_dir(train_url):
        if store.exists(store.prefix_path) and not store.is_dir(store.prefix_path):
            raise StoreError(f"prefix_path must be a folder, but {store.prefix_path} is a file")
        raise StoreError(
            f"the store holds no prepared data: {train_url} does not exist; prepare it with "
            "backend.prepare_data(store, df, ...)"
        )
    names = _data_files(store, train_url)
    if not names:
        raise StoreError(
            f"the store holds no prepared data: {train_url} has no Parquet files and no "
            "Cerebro metadata; prepare it with backend.prepare_data(store, df, ...)"
        )
    unischema = _read_unischema(store, train_url)
    files, schema = _describe_files(store, train_url, names)
    columns, unsupported = _infer_columns(store, train_url, files, schema, unischema)
    splits = {"train": SplitSpec(sum(f.rows for f in files), tuple(files))}
    val_url = store.get_val_data_path()
    if store.is_dir(val_url):
        val_names = _data_files(store, val_url)
        if val_names:
            val_files, val_schema = _describe_files(store, val_url, val_names)
            missing = [c for c in columns if c not in val_schema.names]
            if missing:
                raise StoreError(f"{val_url} lacks columns {missing} that {train_url} has")
            splits["val"] = SplitSpec(sum(f.rows for f in val_files), tuple(val_files))
    listing = {
        s: [[f.name, f.rows, list(f.row_groups)] for f in spec.files] for s, spec in splits.items()
    }
    text = json.dumps({"files": listing, "schema": str(schema)}, sort_keys=True)
    meta = DatasetMetadata(
        fingerprint="external:" + hashlib.sha256(text.encode("utf-8")).hexdigest(),
        feature_columns=(),
        label_columns=(),
        columns=columns,
        splits=splits,
        source="petastorm" if unischema is not None else "parquet",
    )
    logger.info(
        "%s has no Cerebro metadata: inferred %d columns and %s rows from %s Parquet files",
        store.prefix_path,
        len(columns),
        {s: v.total_rows for s, v in splits.items()},
        meta.source,
    )
    return meta, unsupported


def _read_unischema(store: Store, url: str) -> Any | None:
    """The Petastorm ``Unischema`` pickled in ``url/_common_metadata``, if there is one."""
    path = url + "/_common_metadata"
    if not store.exists(path):
        return None
    try:
        with store.filesystem.open_input_file(store.to_fs_path(path)) as f:
            kv = pq.read_schema(f).metadata or {}
    except (OSError, pa.ArrowException) as e:
        raise StoreError(f"{path} is not a readable Parquet metadata file: {e}") from e
    if _UNISCHEMA_KEY not in kv:
        return None
    # Petastorm's own restricted unpickler: it allows only petastorm, numpy, pyspark types.
    from petastorm.etl.legacy import depickle_legacy_package_name_compatible

    try:
        return depickle_legacy_package_name_compatible(kv[_UNISCHEMA_KEY])
    except Exception as e:
        raise StoreError(f"{path} holds a Petastorm Unischema that cannot be loaded: {e}") from e


def _infer_columns(
    store: Store,
    url: str,
    files: list[ParquetFileSpec],
    schema: pa.Schema,
    unischema: Any | None,
) -> tuple[dict[str, ColumnSpec], dict[str, str]]:
    fields = dict(getattr(unischema, "fields", {}) or {})
    columns: dict[str, ColumnSpec] = {}
    unsupported: dict[str, str] = {}
    open_lists: list[str] = []
    for f in schema:
        ufield = fields.get(f.name)
        codec = type(ufield.codec).__name__ if ufield is not None and ufield.codec else None
        if codec is not None:
            if codec not in _SUPPORTED_CODECS:
                unsupported[f.name] = f"uses Petastorm's {codec}, which Cerebro cannot decode"
                continue
            try:
                dtype = np.dtype(ufield.numpy_dtype)
            except TypeError:
                dtype = np.dtype(object)
            if dtype.kind not in _NUMERIC_KINDS:
                unsupported[f.name] = f"holds {dtype} values; Cerebro reads numbers only"
                continue
            shape = (
                ()
                if codec == "ScalarCodec"
                else tuple(-1 if d is None else int(d) for d in ufield.shape)
            )
            columns[f.name] = ColumnSpec(f.name, dtype.name, shape, str(f.type), codec)
            continue
        value_type, shape = f.type, ()
        if pa.types.is_fixed_size_list(f.type):
            value_type, shape = f.type.value_type, (f.type.list_size,)
        elif pa.types.is_list(f.type) or pa.types.is_large_list(f.type):
            value_type, shape = f.type.value_type, (-1,)
        if not (
            pa.types.is_integer(value_type)
            or pa.types.is_floating(value_type)
            or pa.types.is_boolean(value_type)
        ):
            unsupported[f.name] = f"has Parquet type {f.type}; Cerebro reads numbers and arrays"
            continue
        dtype = np.dtype(value_type.to_pandas_dtype())
        if ufield is not None and ufield.shape and all(d is not None for d in ufield.shape):
            shape = tuple(int(d) for d in ufield.shape) if len(ufield.shape) == 1 else shape
        columns[f.name] = ColumnSpec(f.name, dtype.name, shape, str(f.type), None)
        if shape == (-1,):
            open_lists.append(f.name)
    if open_lists:  # the length of list columns: from their first row
        lengths = _first_row_lengths(store, url, files, open_lists)
        for name in open_lists:
            columns[name] = dataclasses.replace(columns[name], shape=(lengths[name],))
    return columns, unsupported


def _first_row_lengths(
    store: Store, url: str, files: list[ParquetFileSpec], names: list[str]
) -> dict[str, int]:
    for f in files:
        if f.rows:
            table = _read_row_groups(store, url + "/" + f.name, f, [0], names).slice(0, 1)
            return {n: len(table.column(n)[0]) for n in names}
    return {n: 0 for n in names}


# ---------------------------------------------------------------------------------- helpers
def _check_split(split: Any) -> None:
    if split not in SPLITS:
        raise CerebroValueError(f"split must be one of {list(SPLITS)}, got {split!r}")


def suggest_column(name: str, available: Iterable[str]) -> str:
    """`` (did you mean 'x'?)`` for the closest available column name, else ``""``."""
    available = list(available)
    lowered = {a.lower(): a for a in available}
    match = lowered.get(str(name).lower())
    if match is None:
        close = difflib.get_close_matches(str(name), available, n=1, cutoff=0.6)
        match = close[0] if close else None
    return f" (did you mean {match!r}?)" if match else ""


def check_column_names(
    arg_name: str, names: Any, available: Mapping[str, Any] | Sequence[str]
) -> list[str]:
    """Check that ``names`` is a non-empty list of distinct names of ``available`` columns.

    Raises:
        CerebroTypeError: not a list of strings (a bare string suggests wrapping it).
        CerebroValueError: empty, or a name repeats.
        ColumnError: a name is not a column; the message suggests the closest one.
    """
    if isinstance(names, str) or not isinstance(names, Sequence):
        hint = f"; did you mean [{names!r}]?" if isinstance(names, str) else ""
        raise CerebroTypeError(
            f"{arg_name} must be a list of column names, got {type(names).__name__} "
            f"{names!r}{hint}"
        )
    names = list(names)
    if not names:
        raise CerebroValueError(f"{arg_name} must name at least one column, got []")
    for n in names:
        if not isinstance(n, str) or not n:
            raise CerebroTypeError(f"{arg_name} must hold non-empty strings, got {n!r}")
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise CerebroValueError(f"{arg_name} must not repeat a column, but repeats {dupes}")
    for n in names:
        if n not in available:
            raise ColumnError(
                f"{arg_name}: no column {n!r} in the data{suggest_column(n, available)}; "
                f"the columns are {list(available)}"
            )
    return names
