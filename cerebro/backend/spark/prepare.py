"""Data preparation on Spark: a DataFrame becomes Petastorm-compatible Parquet in a store.

:func:`prepare_data` (what ``SparkBackend.prepare_data`` calls) works in four steps:

1. **Validate** the arguments against ``df.schema`` (no Spark job): the columns exist and have
   supported types, ``validation`` is a fraction or a 0/1 column, and so on.
2. **Check** the data in ONE aggregation job: row count, nulls, NaN/inf, array lengths,
   validation values, split sizes, and a fingerprint (the sum of a 64-bit hash of every row,
   which does not depend on partitioning). Nothing is written before this passes.
3. **Write** both splits in one job: the rows are spread round-robin over a multiple of
   ``num_workers`` partitions, and each task writes its training rows and its validation rows
   as one Parquet file each, in row groups of ``rows_per_row_group`` rows, into temporary
   sibling folders of the final ones.
4. **Commit**: the old data (if any) is moved aside, the temporary folders are renamed into
   place, the metadata JSON is written last (the commit marker), then the old data is deleted.

A row goes to the validation split when a seeded hash of its content, mapped to ``[0, 1)``, is
below the fraction, so the same rows are chosen on every run however ``df`` is partitioned.
Preparing the same data with the same arguments again finds the same fingerprint in the store
and writes nothing.
"""

from __future__ import annotations

import contextlib
import logging
import math
import numbers
import re
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from pyspark import SparkContext
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from cerebro.exceptions import (
    CerebroTypeError,
    CerebroValueError,
    ColumnError,
    DataPreparationError,
    DatasetMismatchError,
    StoreError,
)
from cerebro.storage._base import Store
from cerebro.storage.dataset import (
    ColumnSpec,
    DatasetMetadata,
    ParquetFileSpec,
    SplitSpec,
    check_column_names,
    compute_fingerprint,
    shard_sizes,
    suggest_column,
)

logger = logging.getLogger(__name__)

__all__ = ["prepare_data"]

#: Default size of a row group (uncompressed): small enough that a shard boundary inside a row
#: group costs little extra reading, large enough for efficient Parquet scans.
TARGET_ROW_GROUP_BYTES = 16 << 20
#: Files grow up to about this size (uncompressed) before a worker's share is split further.
TARGET_FILE_BYTES = 512 << 20

_SCALAR_DTYPES: dict[type, str] = {
    T.ByteType: "int8",
    T.ShortType: "int16",
    T.IntegerType: "int32",
    T.LongType: "int64",
    T.FloatType: "float32",
    T.DoubleType: "float64",
    T.BooleanType: "bool",
}
_VALIDATION_TYPES = (T.BooleanType, T.ByteType, T.ShortType, T.IntegerType, T.LongType)
_RESERVED_PREFIX = "__cerebro_"
_HASH = "__cerebro_hash"
_IS_VAL = "__cerebro_is_val"
_JOB_DESCRIPTION = "spark.job.description"
_WRITE_JOB = "cerebro prepare_data: writing train and val Parquet"
_CHECK_JOB = "cerebro prepare_data: checking and fingerprinting the data"


@dataclass(frozen=True)
class _Column:
    """A feature or label column and how it is stored."""

    name: str
    kind: str  # "scalar", "array" or "vector"
    dtype: str  # numpy dtype of the values
    source_type: str  # Spark type as the user gave it
    contains_null: bool  # array elements may be null

    @property
    def is_float(self) -> bool:
        return self.dtype.startswith("float")


@dataclass(frozen=True)
class _Plan:
    """Everything validated, ready for the Spark jobs."""

    store: Store
    df: DataFrame  # the used columns, vectors converted to arrays, plus the row hash
    columns: tuple[_Column, ...]
    feature_columns: tuple[str, ...]
    label_columns: tuple[str, ...]
    validation: float | str
    is_val: Column  # whether a row of ``df`` goes to the validation split
    val_check: Column | None  # True where a validation column holds a value other than 0/1
    schema: tuple[tuple[str, str], ...]  # (column, type) of every used column
    num_workers: int
    seed: int
    rows_per_row_group: int | None


def prepare_data(
    spark_context_or_session: SparkContext | SparkSession | None,
    store: Store,
    df: DataFrame,
    *,
    num_workers: int,
    validation: float | str = 0.25,
    feature_columns: Sequence[str],
    label_columns: Sequence[str],
    overwrite: bool = False,
    seed: int = 42,
    rows_per_row_group: int | None = None,
) -> DatasetMetadata:
    """Write ``df`` into ``store`` as training and validation Parquet for ``num_workers`` shards.

    Args:
        spark_context_or_session: the Spark context or session ``df`` belongs to (``None``:
            the DataFrame's own session).
        store: where the data goes (``store.get_train_data_path()`` and
            ``store.get_val_data_path()``; metadata at ``store.get_data_metadata_path()``).
        df: the data. Feature and label columns may be numbers (byte/short/int/long/float/
            double/boolean), fixed-length arrays of numbers, or Spark ML vectors.
        num_workers: how many workers will read the data; the files are laid out so each
            gets an equal share.
        validation: a fraction in (0, 1) of rows to hold out (chosen by a seeded hash of the
            row), or the name of a boolean or 0/1 integer column that is true for validation
            rows (the column is not stored).
        feature_columns: the model's input columns.
        label_columns: the model's target columns.
        overwrite: replace a different dataset already in the store (it is deleted only after
            the new one is fully written).
        seed: seed of the validation split's hash.
        rows_per_row_group: rows per Parquet row group (default: about 16 MiB per group).

    Returns:
        The metadata of the prepared (or already present) dataset.

    Raises:
        CerebroTypeError, CerebroValueError, ColumnError: bad arguments or bad data; raised
            before anything is written.
        DatasetMismatchError: the store holds a different dataset and ``overwrite`` is False.
        StoreError: the store cannot be written.
        DataPreparationError: writing failed; the store is left as it was.
    """
    t0 = time.perf_counter()
    plan = _validate(
        store,
        df,
        num_workers=num_workers,
        validation=validation,
        feature_columns=feature_columns,
        label_columns=label_columns,
        overwrite=overwrite,
        seed=seed,
        rows_per_row_group=rows_per_row_group,
    )
    sc = _spark_context(spark_context_or_session, df)
    existing = _existing_dataset(store)
    if isinstance(existing, str) and not overwrite:
        raise DatasetMismatchError(
            f"the store {store.prefix_path} already holds {existing}; pass overwrite=True to "
            "replace it, or use another store"
        )
    with _undo_new_prefix(store), _progress() as progress:
        if existing is None:  # sure to write: fail on a read-only store before the data pass
            store.check_writable()
        progress.set_postfix_str("checking data")
        stats = _check_data(sc, plan)
        progress.update()
        fingerprint = compute_fingerprint(
            row_count=stats["rows"],
            row_hash_sum=stats["hash_sum"],
            schema=plan.schema,
            feature_columns=plan.feature_columns,
            label_columns=plan.label_columns,
            validation=plan.validation,
            seed=plan.seed,
        )
        if isinstance(existing, DatasetMetadata):
            if existing.fingerprint == fingerprint:
                missing = _missing_files(store, existing)
                if not missing:
                    _log_skip(store, existing, num_workers)
                    progress.update(2)
                    return existing
                if not overwrite:
                    raise StoreError(
                        f"the store {store.prefix_path} holds this dataset but files are "
                        f"missing ({missing[:3]}); pass overwrite=True to prepare it again"
                    )
            elif not overwrite:
                raise DatasetMismatchError(
                    f"the store {store.prefix_path} already holds a different prepared dataset "
                    f"(fingerprint {existing.fingerprint[:24]}..., prepared "
                    f"{existing.created}, features {list(existing.feature_columns)}) than this "
                    f"one ({fingerprint[:24]}...); pass overwrite=True to replace it, or use "
                    "another store"
                )
        if existing is not None:  # not checked yet: a read-only store may hold a dataset to skip
            store.check_writable()
        progress.set_postfix_str("writing")
        meta = _write(sc, plan, stats, fingerprint, progress)
    logger.info(
        "prepared %d training and %d validation rows for %d workers in %s (%.1f s)",
        meta.split_rows("train"),
        meta.split_rows("val"),
        num_workers,
        store.prefix_path,
        time.perf_counter() - t0,
    )
    return meta


# ---------------------------------------------------------------------------------- validation
def _spark_context(spark: Any, df: Any) -> SparkContext:
    if isinstance(spark, SparkSession):
        return spark.sparkContext
    if isinstance(spark, SparkContext):
        return spark
    if spark is None and isinstance(df, DataFrame):
        return df.sparkSession.sparkContext
    raise CerebroTypeError(
        "spark_context_or_session must be a SparkContext, a SparkSession or None, got "
        f"{type(spark).__name__}"
    )


def _validate(
    store: Any,
    df: Any,
    *,
    num_workers: Any,
    validation: Any,
    feature_columns: Any,
    label_columns: Any,
    overwrite: Any,
    seed: Any,
    rows_per_row_group: Any,
) -> _Plan:
    """Check every argument against ``df.schema`` (no Spark job) and build the plan."""
    if not isinstance(store, Store):
        raise CerebroTypeError(f"store must be a cerebro.storage.Store, got {store!r}")
    if not isinstance(df, DataFrame):
        hint = "; convert it with spark.createDataFrame(df)" if _is_pandas(df) else ""
        raise CerebroTypeError(
            f"df must be a pyspark.sql.DataFrame, got {type(df).__name__}{hint}"
        )
    _check_int("num_workers", num_workers, minimum=1)
    _check_int("seed", seed, minimum=-(1 << 63))
    if seed >= 1 << 63:
        raise CerebroValueError(f"seed must fit in 64 bits (< 2**63), got {seed}")
    if rows_per_row_group is not None:
        _check_int("rows_per_row_group", rows_per_row_group, minimum=1)
    if not isinstance(overwrite, bool):
        raise CerebroTypeError(f"overwrite must be True or False, got {overwrite!r}")

    fields = {f.name: f for f in df.schema.fields}
    names = list(df.columns)
    features = check_column_names("feature_columns", feature_columns, names)
    labels = check_column_names("label_columns", label_columns, names)
    overlap = [c for c in features if c in labels]
    if overlap:
        raise CerebroValueError(
            f"feature_columns and label_columns must not overlap, both hold {overlap}"
        )
    used = features + labels
    for c in used:
        if names.count(c) > 1:
            raise ColumnError(f"df has {names.count(c)} columns named {c!r}; rename them")
        if c.startswith(_RESERVED_PREFIX):
            raise ColumnError(
                f"column names starting with {_RESERVED_PREFIX!r} are reserved: {c!r}"
            )
    columns, problems = [], []
    for c in used:
        kind = _column_kind(fields[c])
        if isinstance(kind, str):
            problems.append(f"column {c!r} has type {fields[c].dataType.simpleString()}: {kind}")
        else:
            columns.append(kind)
    if problems:
        raise ColumnError("unsupported column types: " + "; ".join(problems))

    selected = [_converted(c) for c in columns]
    schema = [(c.name, c.source_type) for c in columns]
    val_check = None
    if isinstance(validation, str):
        val_col = _validation_column(validation, fields, names, used)
        selected.append(_ref(validation).alias(validation))
        schema.append((validation, fields[validation].dataType.simpleString()))
        if isinstance(fields[validation].dataType, T.BooleanType):
            is_val = _ref(validation)
        else:
            is_val = _ref(validation) == F.lit(1)
            val_check = ~_ref(validation).isin(0, 1)
        hashed = [_ref(c.name) for c in columns] + [val_col]
    else:
        if (
            isinstance(validation, bool)
            or not isinstance(validation, numbers.Real)
            or not 0.0 < float(validation) < 1.0
        ):
            raise CerebroValueError(
                "validation must be a fraction strictly between 0 and 1 or the name of a "
                f"boolean or 0/1 column, got {validation!r}"
            )
        validation = float(validation)
        hashed = [_ref(c.name) for c in columns]
        # The top 53 bits of the row hash as a double in [0, 1): exact, uniform, seeded.
        unit = F.shiftrightunsigned(_ref(_HASH), 11).cast("double") / F.lit(float(1 << 53))
        is_val = unit < F.lit(validation)
    row_hash = F.xxhash64(F.lit(seed).cast("long"), *hashed)
    prepared = df.select(*selected).withColumn(_HASH, row_hash)
    return _Plan(
        store=store,
        df=prepared,
        columns=tuple(columns),
        feature_columns=tuple(features),
        label_columns=tuple(labels),
        validation=validation,
        is_val=is_val,
        val_check=val_check,
        schema=tuple(schema),
        num_workers=num_workers,
        seed=seed,
        rows_per_row_group=rows_per_row_group,
    )


def _is_pandas(df: Any) -> bool:
    return type(df).__module__.split(".")[0] == "pandas"


def _check_int(name: str, value: Any, *, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise CerebroTypeError(f"{name} must be an int, got {type(value).__name__} {value!r}")
    if value < minimum:
        raise CerebroValueError(f"{name} must be >= {minimum}, got {value}")


def _ref(name: str) -> Column:
    """A column reference that takes ``name`` literally (dots, spaces, backticks)."""
    return F.col("`" + name.replace("`", "``") + "`")


def _is_vector(data_type: T.DataType) -> bool:
    from pyspark.ml.linalg import VectorUDT

    return isinstance(data_type, VectorUDT)


def _column_kind(f: T.StructField) -> _Column | str:
    """How column ``f`` is stored, or why it cannot be."""
    dt = f.dataType
    if type(dt) in _SCALAR_DTYPES:
        return _Column(f.name, "scalar", _SCALAR_DTYPES[type(dt)], dt.simpleString(), False)
    if isinstance(dt, T.ArrayType):
        element = dt.elementType
        if type(element) in _SCALAR_DTYPES:
            dtype = _SCALAR_DTYPES[type(element)]
            return _Column(f.name, "array", dtype, dt.simpleString(), dt.containsNull)
        if isinstance(element, T.ArrayType):
            return "nested arrays are not supported; flatten them into one array per row"
        return f"arrays of {element.simpleString()} are not supported; use arrays of numbers"
    if _is_vector(dt):
        return _Column(f.name, "vector", "float64", "vector", False)
    if isinstance(dt, T.UserDefinedType) and "mllib" in type(dt).__module__:
        return (
            "old pyspark.mllib vectors are not supported; convert them with "
            "pyspark.mllib.util.MLUtils.convertVectorColumnsToML"
        )
    if isinstance(dt, T.StringType | T.BinaryType):
        return (
            "only numbers, arrays of numbers and ML vectors are supported; encode it as "
            "numbers first (e.g. pyspark.ml.feature.StringIndexer)"
        )
    if isinstance(dt, T.DecimalType):
        return "decimals are not supported; cast it to double"
    if isinstance(dt, T.DateType | T.TimestampType | T.TimestampNTZType):
        return "dates and timestamps are not supported; convert it to a number"
    if isinstance(dt, T.MapType | T.StructType):
        return "maps and structs are not supported; flatten it into numeric columns"
    return "only numbers, arrays of numbers and ML vectors are supported"


def _converted(c: _Column) -> Column:
    if c.kind == "vector":
        from pyspark.ml.functions import vector_to_array

        return vector_to_array(_ref(c.name), "float64").alias(c.name)
    return _ref(c.name).alias(c.name)


def _validation_column(
    name: str, fields: dict[str, T.StructField], names: list[str], used: list[str]
) -> Column:
    if name not in fields:
        raise ColumnError(
            f"validation: no column {name!r} in df{suggest_column(name, names)}; pass a "
            f"fraction in (0, 1) or the name of a boolean or 0/1 column of {names}"
        )
    if name in used:
        raise CerebroValueError(
            f"validation column {name!r} must not also be a feature or label column"
        )
    dt = fields[name].dataType
    if not isinstance(dt, _VALIDATION_TYPES):
        raise ColumnError(
            f"validation column {name!r} must be boolean or an integer column of 0/1, got "
            f"type {dt.simpleString()}"
        )
    return _ref(name)


# ---------------------------------------------------------------------------------- checks
@contextlib.contextmanager
def _job_description(sc: SparkContext, text: str) -> Iterator[None]:
    old = sc.getLocalProperty(_JOB_DESCRIPTION)
    sc.setLocalProperty(_JOB_DESCRIPTION, text)
    try:
        yield
    finally:
        sc.setLocalProperty(_JOB_DESCRIPTION, old)  # None removes it


def _check_data(sc: SparkContext, plan: _Plan) -> dict[str, Any]:
    """Run the single aggregation job; raise on bad data; return counts and array lengths."""
    h = _ref(_HASH)
    exprs: dict[str, Column] = {
        "rows": F.count(F.lit(1)),
        "hash_lo": F.sum(h.bitwiseAND(F.lit(0xFFFFFFFF))),
        "hash_hi": F.sum(F.shiftrightunsigned(h, 32)),
        "val_rows": F.count(F.when(plan.is_val, 1)),
    }

    def nonfinite(x: Column) -> Column:
        return F.isnan(x) | (F.abs(x) == F.lit(float("inf")))

    for c in plan.columns:
        col = _ref(c.name)
        exprs[f"nulls/{c.name}"] = F.count(F.when(col.isNull(), 1))
        if c.kind == "scalar":
            if c.is_float:
                exprs[f"nonfinite/{c.name}"] = F.count(F.when(nonfinite(col), 1))
            continue
        size = F.when(col.isNotNull(), F.size(col))
        exprs[f"minlen/{c.name}"] = F.min(size)
        exprs[f"maxlen/{c.name}"] = F.max(size)
        if c.contains_null:
            exprs[f"elemnulls/{c.name}"] = F.count(F.when(F.exists(col, lambda x: x.isNull()), 1))
        if c.is_float:
            exprs[f"nonfinite/{c.name}"] = F.count(F.when(F.exists(col, nonfinite), 1))
    if isinstance(plan.validation, str):
        exprs["val_nulls"] = F.count(F.when(_ref(plan.validation).isNull(), 1))
        if plan.val_check is not None:
            exprs["val_bad"] = F.count(F.when(plan.val_check, 1))
    keys = list(exprs)
    try:
        with _job_description(sc, _CHECK_JOB):
            aggregated = plan.df.agg(*[exprs[k].alias(f"c{i}") for i, k in enumerate(keys)])
            row = aggregated.collect()[0]
    except Exception as e:  # the DataFrame itself failed (a UDF, a missing input file...)
        raise DataPreparationError(
            f"computing df failed while checking it (nothing was written): {_summary(e)}"
        ) from e
    got = {k: row[i] for i, k in enumerate(keys)}
    n = got["rows"]
    if n == 0:
        raise CerebroValueError("df is empty: it has 0 rows, there is nothing to prepare")

    problems = []
    for c in plan.columns:
        kind = "array column" if c.kind != "scalar" else "column"
        if got[f"nulls/{c.name}"]:
            problems.append(f"column {c.name!r} has {got[f'nulls/{c.name}']} null values")
        if got.get(f"elemnulls/{c.name}"):
            problems.append(
                f"array column {c.name!r} has {got[f'elemnulls/{c.name}']} rows with null elements"
            )
        if got.get(f"nonfinite/{c.name}"):
            problems.append(
                f"{kind} {c.name!r} has {got[f'nonfinite/{c.name}']} rows with NaN or "
                "infinite values"
            )
        if c.kind != "scalar":
            lo, hi = got[f"minlen/{c.name}"], got[f"maxlen/{c.name}"]
            if lo is not None and lo != hi:
                problems.append(
                    f"array column {c.name!r} has rows of unequal length ({lo} to {hi} "
                    "elements); every row must have the same length"
                )
            elif hi == 0:
                problems.append(f"array column {c.name!r} holds only empty arrays")
    if isinstance(plan.validation, str):
        if got["val_nulls"]:
            problems.append(
                f"validation column {plan.validation!r} has {got['val_nulls']} null values"
            )
        if got.get("val_bad"):
            problems.append(
                f"validation column {plan.validation!r} has {got['val_bad']} values other "
                "than 0 and 1"
            )
    if problems:
        raise ColumnError(f"df has bad values (of {n} rows): " + "; ".join(problems))

    val_rows = got["val_rows"]
    train_rows = n - val_rows
    how = (
        f"validation column {plan.validation!r}"
        if isinstance(plan.validation, str)
        else f"validation={plan.validation}"
    )
    for split, rows in (("training", train_rows), ("validation", val_rows)):
        if rows == 0:
            raise CerebroValueError(
                f"the {split} split would be empty: {how} puts {val_rows} of {n} rows into "
                "validation; change validation or use more data"
            )
        if rows < plan.num_workers:
            raise CerebroValueError(
                f"the {split} split would have {rows} rows, fewer than num_workers="
                f"{plan.num_workers} ({how}, {n} rows): every worker needs at least one row"
            )
    lo_sum, hi_sum = got["hash_lo"] or 0, got["hash_hi"] or 0
    lengths = {c.name: got[f"maxlen/{c.name}"] for c in plan.columns if c.kind != "scalar"}
    logger.info("checked %d rows: %d for training, %d for validation", n, train_rows, val_rows)
    return {
        "rows": n,
        "train_rows": train_rows,
        "val_rows": val_rows,
        "hash_sum": ((hi_sum << 32) + lo_sum) % (1 << 64),
        "lengths": lengths,
    }


# ---------------------------------------------------------------------------------- store state
def _existing_dataset(store: Store) -> DatasetMetadata | str | None:
    """The prepared dataset in the store, a description of foreign data there, or None."""
    meta_url = store.get_data_metadata_path()
    if store.exists(meta_url):
        try:
            return DatasetMetadata.from_dict(store.read_json(meta_url))
        except StoreError as e:
            return f"a dataset whose metadata {meta_url} cannot be read ({e})"
    for url in (store.get_train_data_path(), store.get_val_data_path()):
        if store.exists(url) and (not store.is_dir(url) or store.listdir(url)):
            return f"data at {url} that Cerebro did not prepare (there is no {meta_url})"
    return None


def _missing_files(store: Store, meta: DatasetMetadata) -> list[str]:
    missing = []
    for split, spec in meta.splits.items():
        url = _split_url(store, split)
        present = set(store.listdir(url)) if store.is_dir(url) else set()
        missing += [f"{url}/{f.name}" for f in spec.files if f.name not in present]
    return missing


def _log_skip(store: Store, meta: DatasetMetadata, num_workers: int) -> None:
    logger.info(
        "skipped writing: %s already holds this dataset (fingerprint %s..., prepared %s)",
        store.prefix_path,
        meta.fingerprint[:24],
        meta.created,
    )
    if meta.num_workers != num_workers:
        logger.info(
            "the data was laid out for %s workers, now %d: shards stay balanced by rows, "
            "a worker may read a few extra row groups",
            meta.num_workers,
            num_workers,
        )


def _split_url(store: Store, split: str) -> str:
    return store.get_train_data_path() if split == "train" else store.get_val_data_path()


@contextlib.contextmanager
def _undo_new_prefix(store: Store) -> Iterator[None]:
    """On failure, remove the store's prefix folder again if this call created it empty."""
    existed = store.exists(store.prefix_path)
    try:
        yield
    except BaseException:
        if not existed:
            with contextlib.suppress(Exception):
                if store.is_dir(store.prefix_path) and not store.listdir(store.prefix_path):
                    store.delete(store.prefix_path)
        raise


@contextlib.contextmanager
def _progress() -> Iterator[Any]:
    from tqdm.auto import tqdm

    bar = tqdm(total=3, desc="cerebro prepare_data", unit="step", disable=None)
    try:
        yield bar
    finally:
        bar.close()


# ---------------------------------------------------------------------------------- writing
def _layout(plan: _Plan, stats: dict[str, Any]) -> tuple[int, int, dict[str, tuple[int, ...]]]:
    """(partitions, rows per row group, shape per column) for the write job."""
    shapes = {
        c.name: (stats["lengths"][c.name],) if c.kind != "scalar" else () for c in plan.columns
    }
    specs = [ColumnSpec(c.name, c.dtype, shapes[c.name]) for c in plan.columns]
    row_bytes = max(1, sum(s.row_nbytes for s in specs))
    per_worker = stats["rows"] * row_bytes / plan.num_workers
    files_per_worker = max(1, math.ceil(per_worker / TARGET_FILE_BYTES))
    rows_per_group = plan.rows_per_row_group or max(1, TARGET_ROW_GROUP_BYTES // row_bytes)
    return plan.num_workers * files_per_worker, rows_per_group, shapes


def _write(
    sc: SparkContext, plan: _Plan, stats: dict[str, Any], fingerprint: str, progress: Any
) -> DatasetMetadata:
    store = plan.store
    partitions, rows_per_group, shapes = _layout(plan, stats)
    finals = {"train": store.get_train_data_path(), "val": store.get_val_data_path()}
    temps = {split: store.temp_sibling(url) for split, url in finals.items()}
    names = [c.name for c in plan.columns]
    writer = _PartitionWriter(store, temps, names, rows_per_group)
    try:
        for url in temps.values():
            store.makedirs(url)
        rows = (
            plan.df.withColumn(_IS_VAL, plan.is_val)
            .select(*[_ref(n) for n in names], _ref(_IS_VAL))
            .repartition(partitions)
            .mapInArrow(writer, "split string, name string, rows long, row_groups array<long>")
        )
        with _job_description(sc, _WRITE_JOB):
            written = rows.collect()
        progress.update()
        files: dict[str, list[ParquetFileSpec]] = {"train": [], "val": []}
        for r in written:
            files[r["split"]].append(ParquetFileSpec(r["name"], r["rows"], tuple(r["row_groups"])))
        splits = {}
        for split in ("train", "val"):
            specs = tuple(sorted(files[split], key=lambda f: f.name))
            total = sum(f.rows for f in specs)
            if total != stats[f"{split}_rows"]:
                raise DataPreparationError(
                    f"the {split} split got {total} rows but the check pass counted "
                    f"{stats[f'{split}_rows']}: df gave different rows on two passes (is it "
                    "non-deterministic? cache or checkpoint it first)"
                )
            splits[split] = SplitSpec(total, specs, tuple(shard_sizes(total, plan.num_workers)))
        meta = DatasetMetadata(
            fingerprint=fingerprint,
            feature_columns=plan.feature_columns,
            label_columns=plan.label_columns,
            columns={
                c.name: ColumnSpec(c.name, c.dtype, shapes[c.name], c.source_type)
                for c in plan.columns
            },
            splits=splits,
            num_workers=plan.num_workers,
            validation=plan.validation,
            seed=plan.seed,
            created=datetime.now(UTC).isoformat(timespec="seconds"),
            cerebro_version=_cerebro_version(),
        )
        progress.set_postfix_str("committing")
        _commit(store, temps, finals, meta)
        progress.update()
        return meta
    except BaseException as e:
        for url in temps.values():
            _delete_quietly(store, url)
        if isinstance(e, Exception) and not isinstance(e, DataPreparationError | StoreError):
            raise DataPreparationError(
                f"writing the prepared data to {store.prefix_path} failed; the store is left "
                f"as it was: {_summary(e)}"
            ) from e
        raise


def _summary(e: BaseException) -> str:
    """``Type: first line`` of an error, plus the innermost error of an embedded traceback
    (a Python worker's failure arrives as a long Spark message ending in the real error).
    """
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    if not lines:
        return type(e).__name__
    text = f"{type(e).__name__}: {lines[0]}"
    errors = [ln for ln in lines[1:] if re.match(r"^[\w.]+(Error|Exception)(:|$)", ln)]
    if errors:
        text += f" ... {errors[-1]}"
    return text[:1000]


def _cerebro_version() -> str:
    import cerebro

    return cerebro.__version__


def _commit(
    store: Store, temps: dict[str, str], finals: dict[str, str], meta: DatasetMetadata
) -> None:
    """Swap the new splits into place and write the metadata last; undo on failure."""
    moved_aside: list[tuple[str, str]] = []  # (old data's temporary url, final url)
    moved_in: list[str] = []
    try:
        # Moving the old train folder aside also moves its metadata: the old dataset stops
        # being valid in one step.
        for url in finals.values():
            if store.exists(url):
                aside = store.temp_sibling(url)
                store.rename(url, aside)
                moved_aside.append((aside, url))
        for split, url in finals.items():
            store.rename(temps[split], url)
            moved_in.append(url)
        store.write_json(store.get_data_metadata_path(), meta.to_dict())
    except BaseException:
        for url in moved_in:
            _delete_quietly(store, url)
        for aside, url in moved_aside:
            try:
                store.rename(aside, url)
            except Exception:
                logger.error("could not move %s back to %s", aside, url, exc_info=True)
        raise
    for aside, _ in moved_aside:
        _delete_quietly(store, aside)


def _delete_quietly(store: Store, url: str) -> None:
    """Delete ``url``; a failure is logged, not raised (cleanup must not hide the real error)."""
    try:
        store.delete(url)
    except Exception:
        logger.warning("could not delete %s", url, exc_info=True)


class _PartitionWriter:
    """The ``mapInArrow`` function: writes one task's rows as one file per split.

    Rows arrive as Arrow batches with a boolean ``_IS_VAL`` column; each split's rows are
    buffered into row groups of exactly ``rows_per_group`` rows (the last may be shorter) and
    written through ``store.local_write`` (atomic). Yields one stats row per file written.
    """

    def __init__(
        self, store: Store, urls: dict[str, str], columns: list[str], rows_per_group: int
    ) -> None:
        self.store = store
        self.urls = urls
        self.columns = columns
        self.rows_per_group = rows_per_group

    def __call__(self, batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        from pyspark import TaskContext

        name = f"part-{TaskContext.get().partitionId():05d}.parquet"
        sinks: dict[str, _RowGroupWriter] = {}
        with contextlib.ExitStack() as stack:
            for batch in batches:
                if not batch.num_rows:
                    continue
                table = pa.Table.from_batches([batch])
                is_val = table.column(_IS_VAL)
                data = table.select(self.columns)
                for split, mask in (("val", is_val), ("train", pc.invert(is_val))):
                    part = data.filter(mask)
                    if not part.num_rows:
                        continue
                    if split not in sinks:
                        url = self.urls[split] + "/" + name
                        sinks[split] = stack.enter_context(
                            _open_sink(self.store, url, data.schema, self.rows_per_group)
                        )
                    sinks[split].write(part)
        stats = [
            {"split": split, "name": name, "rows": s.rows, "row_groups": s.row_groups}
            for split, s in sinks.items()
        ]
        schema = pa.schema(
            [
                ("split", pa.string()),
                ("name", pa.string()),
                ("rows", pa.int64()),
                ("row_groups", pa.list_(pa.int64())),
            ]
        )
        yield pa.RecordBatch.from_pylist(stats, schema=schema)


@contextlib.contextmanager
def _open_sink(
    store: Store, url: str, schema: pa.Schema, rows_per_group: int
) -> Iterator[_RowGroupWriter]:
    with store.local_write(url) as local_path:
        sink = _RowGroupWriter(local_path, schema, rows_per_group)
        try:
            yield sink
        except BaseException:
            sink.abort()
            raise
        sink.close()


class _RowGroupWriter:
    """A Parquet file written in row groups of exactly ``rows_per_group`` rows."""

    def __init__(self, path: str, schema: pa.Schema, rows_per_group: int) -> None:
        self._writer = pq.ParquetWriter(path, schema, compression="snappy")
        self._n = rows_per_group
        self._buffer: list[pa.Table] = []
        self._buffered = 0
        self.rows = 0
        self.row_groups: list[int] = []

    def write(self, table: pa.Table) -> None:
        self._buffer.append(table)
        self._buffered += table.num_rows
        if self._buffered >= self._n:
            pending = pa.concat_tables(self._buffer)
            start = 0
            while pending.num_rows - start >= self._n:
                self._emit(pending.slice(start, self._n))
                start += self._n
            rest = pending.slice(start)
            self._buffer = [rest] if rest.num_rows else []
            self._buffered = rest.num_rows

    def _emit(self, table: pa.Table) -> None:
        self._writer.write_table(table, row_group_size=table.num_rows)
        self.rows += table.num_rows
        self.row_groups.append(table.num_rows)

    def close(self) -> None:
        if self._buffered:
            self._emit(pa.concat_tables(self._buffer))
            self._buffer, self._buffered = [], 0
        self._writer.close()

    def abort(self) -> None:
        with contextlib.suppress(Exception):
            self._writer.close()
