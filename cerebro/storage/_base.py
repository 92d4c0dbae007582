"""The :class:`Store` base class: where Cerebro keeps prepared data, checkpoints and logs.

A store is a prefix on a filesystem with a fixed layout::

    <prefix>/train_data/       prepared training data (Petastorm-compatible Parquet)
    <prefix>/val_data/         prepared validation data
    <prefix>/runs/<model_id>/  each model's checkpoint and JSON state
    <prefix>/logs/<model_id>/  each model's TensorBoard event files

Each sub-path can be overridden. Every path the store hands out is a URL (``file:///tmp/exp``,
``hdfs://nn:8020/exp``) that Spark, Petastorm and the store's own file methods all accept.
All file access goes through one ``pyarrow.fs.FileSystem``, so subclasses only say how to open
that filesystem and how URLs map onto it. Every file Cerebro writes goes to a temporary name
first and is renamed into place, so a crash never leaves a half-written file.

Stores are picklable: the filesystem client is dropped when pickled and reopened lazily on the
executor, which is how workers reach the store.
"""

from __future__ import annotations

import abc
import contextlib
import json
import logging
import os
import posixpath
import re
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import pyarrow.fs as pafs

from cerebro.exceptions import CerebroValueError, StoreError

logger = logging.getLogger(__name__)

_MODEL_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}$")
TMP_MARKER = ".cerebro-tmp-"


def validate_model_id(model_id: str, arg_name: str = "model_id") -> str:
    """Return ``model_id`` if it is safe to use as one path component, else raise.

    A model id may hold letters, digits, ``_``, ``.`` and ``-``, must start with a letter or
    digit and be at most 128 characters, so it can never make a path leave the store prefix.
    ``arg_name`` names the argument in the error (e.g. ``experiment_name``).
    """
    if not isinstance(model_id, str) or not _MODEL_ID_RE.match(model_id):
        raise CerebroValueError(
            f"{arg_name} must be 1-128 characters of letters, digits, '_', '.' or '-' starting "
            f"with a letter or digit, got {model_id!r}"
        )
    return model_id


class Store(abc.ABC):
    """Base class of all stores: the path layout and atomic file access.

    Args:
        prefix_path: URL or path of the store's root folder.
        train_path: where prepared training data goes (default ``<prefix>/train_data``).
        val_path: where prepared validation data goes (default ``<prefix>/val_data``).
        runs_path: where model checkpoints go (default ``<prefix>/runs``).
        logs_path: where TensorBoard logs go (default ``<prefix>/logs``).
    """

    #: URL schemes this store accepts (the first one is the canonical one).
    schemes: tuple[str, ...] = ()

    def __init__(
        self,
        prefix_path: str,
        *,
        train_path: str | None = None,
        val_path: str | None = None,
        runs_path: str | None = None,
        logs_path: str | None = None,
    ) -> None:
        if not isinstance(prefix_path, str) or not prefix_path.strip():
            raise CerebroValueError(
                f"prefix_path must be a non-empty path or URL, got {prefix_path!r}"
            )
        self.prefix_path = self._normalize(prefix_path, "prefix_path")
        self._train_path = self._sub_path(train_path, "train_data", "train_path")
        self._val_path = self._sub_path(val_path, "val_data", "val_path")
        self._runs_path = self._sub_path(runs_path, "runs", "runs_path")
        self._logs_path = self._sub_path(logs_path, "logs", "logs_path")
        self._fs: pafs.FileSystem | None = None

    # ------------------------------------------------------------------ subclass hooks
    @abc.abstractmethod
    def _normalize(self, path: str, arg_name: str) -> str:
        """Turn a user path or URL into this store's canonical URL (no trailing slash)."""

    @abc.abstractmethod
    def _make_filesystem(self) -> pafs.FileSystem:
        """Open the ``pyarrow.fs`` filesystem this store reads and writes through."""

    def to_fs_path(self, url: str) -> str:
        """Map a URL of this store to a path on :attr:`filesystem`."""
        return urlsplit(url).path or "/"

    def _replace(self, tmp_path: str, fs_path: str) -> None:
        """Move ``tmp_path`` onto ``fs_path``, replacing it (an atomic rename where possible)."""
        self.filesystem.move(tmp_path, fs_path)

    # ------------------------------------------------------------------ layout
    def _sub_path(self, override: str | None, default: str, arg_name: str) -> str:
        if override is None:
            return self.prefix_path + "/" + default
        return self._normalize(override, arg_name)

    def get_train_data_path(self) -> str:
        """URL of the prepared training data."""
        return self._train_path

    def get_val_data_path(self) -> str:
        """URL of the prepared validation data."""
        return self._val_path

    def get_data_metadata_path(self) -> str:
        """URL of the JSON file describing the prepared data (written last: a commit marker)."""
        return self._train_path + "/_cerebro_metadata.json"

    def get_runs_path(self) -> str:
        """URL of the folder holding one sub-folder per model."""
        return self._runs_path

    def get_run_path(self, model_id: str) -> str:
        """URL of the folder holding one model's checkpoint and state."""
        return self._runs_path + "/" + validate_model_id(model_id)

    def get_checkpoint_path(self, model_id: str) -> str:
        """URL of a model's Keras 3 checkpoint (weights and optimizer state)."""
        return self.get_run_path(model_id) + "/checkpoint.keras"

    def get_run_state_path(self, model_id: str) -> str:
        """URL of a model's JSON state (epoch, partitions done, history)."""
        return self.get_run_path(model_id) + "/state.json"

    def get_logs_path(self, model_id: str) -> str:
        """URL of the folder holding a model's TensorBoard event files."""
        return self._logs_path + "/" + validate_model_id(model_id)

    def get_experiment_path(self, experiment_name: str) -> str:
        """URL of the JSON record of a search (its configuration, searcher state, models),
        which is what lets an interrupted search resume."""
        return f"{self._runs_path}/_experiments/{validate_model_id(experiment_name)}.json"

    # ------------------------------------------------------------------ filesystem
    @property
    def filesystem(self) -> pafs.FileSystem:
        """The ``pyarrow.fs`` filesystem, opened on first use (also after unpickling)."""
        if self._fs is None:
            self._fs = self._make_filesystem()
        return self._fs

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_fs"] = None  # filesystem clients do not pickle; reopened on the other side
        return state

    def _info(self, url: str) -> pafs.FileInfo:
        return self.filesystem.get_file_info(self.to_fs_path(url))

    def exists(self, url: str) -> bool:
        """Whether a file or folder exists at ``url``."""
        return self._info(url).type != pafs.FileType.NotFound

    def is_dir(self, url: str) -> bool:
        """Whether ``url`` is a folder."""
        return self._info(url).type == pafs.FileType.Directory

    def makedirs(self, url: str) -> None:
        """Create ``url`` and its parents; no error if it exists."""
        self.filesystem.create_dir(self.to_fs_path(url), recursive=True)

    def listdir(self, url: str) -> list[str]:
        """Sorted names of the entries of folder ``url`` (without temporary files)."""
        selector = pafs.FileSelector(self.to_fs_path(url), allow_not_found=True)
        names = (posixpath.basename(i.path) for i in self.filesystem.get_file_info(selector))
        return sorted(n for n in names if TMP_MARKER not in n)

    def delete(self, url: str) -> None:
        """Delete the file or folder at ``url`` (recursively); no error if it is missing."""
        info = self._info(url)
        if info.type == pafs.FileType.Directory:
            self.filesystem.delete_dir(info.path)
        elif info.type != pafs.FileType.NotFound:
            self.filesystem.delete_file(info.path)

    def rename(self, src_url: str, dst_url: str) -> None:
        """Rename ``src_url`` to ``dst_url``, which must not exist."""
        if self.exists(dst_url):
            raise StoreError(f"cannot rename {src_url} to {dst_url}: the destination exists")
        self.filesystem.move(self.to_fs_path(src_url), self.to_fs_path(dst_url))

    def temp_sibling(self, url: str) -> str:
        """A fresh URL next to ``url`` for writing before an atomic rename onto ``url``."""
        parent, name = url.rsplit("/", 1)
        return f"{parent}/.{name}{TMP_MARKER}{uuid.uuid4().hex[:12]}"

    def read_bytes(self, url: str) -> bytes:
        """The whole content of file ``url``."""
        with self.filesystem.open_input_stream(self.to_fs_path(url)) as f:
            return f.read()

    def write_bytes(self, url: str, data: bytes) -> None:
        """Write ``data`` to ``url`` atomically: to a temporary name, then renamed into place."""
        tmp_url = self.temp_sibling(url)
        fs_tmp = self.to_fs_path(tmp_url)
        self.makedirs(url.rsplit("/", 1)[0])
        try:
            with self.filesystem.open_output_stream(fs_tmp) as f:
                f.write(data)
            self._replace(fs_tmp, self.to_fs_path(url))
        except BaseException:
            self._discard(tmp_url)
            raise

    def _discard(self, url: str) -> None:
        try:
            self.delete(url)
        except Exception:  # cleanup after a failure must not hide that failure
            logger.debug("could not remove temporary %s", url, exc_info=True)

    def read_text(self, url: str) -> str:
        """The content of text file ``url`` (UTF-8)."""
        return self.read_bytes(url).decode("utf-8")

    def write_text(self, url: str, text: str) -> None:
        """Write ``text`` (UTF-8) to ``url`` atomically."""
        self.write_bytes(url, text.encode("utf-8"))

    def read_json(self, url: str) -> Any:
        """Parse JSON file ``url``; a corrupt file raises :class:`StoreError`."""
        try:
            return json.loads(self.read_text(url))
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise StoreError(f"{url} is not valid JSON (corrupt or truncated): {e}") from e

    def write_json(self, url: str, obj: Any) -> None:
        """Write ``obj`` as indented JSON to ``url`` atomically."""
        self.write_text(url, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")

    @contextlib.contextmanager
    def local_write(self, url: str) -> Iterator[str]:
        """Yield a local file path to write; on success it lands atomically at ``url``.

        Lets libraries that only write local files (Keras, TensorBoard) write into any store.
        """
        tmpdir = tempfile.mkdtemp(prefix="cerebro-")
        local = os.path.join(tmpdir, url.rsplit("/", 1)[1])
        try:
            yield local
            self.upload_file(local, url)
        finally:
            shutil.rmtree(tmpdir, ignore_errors=True)

    @contextlib.contextmanager
    def local_read(self, url: str) -> Iterator[str]:
        """Yield a local path holding the content of file ``url`` (a copy if remote)."""
        tmpdir = tempfile.mkdtemp(prefix="cerebro-")
        local = os.path.join(tmpdir, url.rsplit("/", 1)[1])
        try:
            self.download_file(url, local)
            yield local
        finally:
            shutil.rmtree(tmpdir, ignore_errors=True)

    def upload_file(self, local_path: str, url: str) -> None:
        """Copy local file ``local_path`` to ``url`` atomically."""
        tmp_url = self.temp_sibling(url)
        self.makedirs(url.rsplit("/", 1)[0])
        try:
            pafs.copy_files(
                local_path,
                self.to_fs_path(tmp_url),
                source_filesystem=pafs.LocalFileSystem(),
                destination_filesystem=self.filesystem,
            )
            self._replace(self.to_fs_path(tmp_url), self.to_fs_path(url))
        except BaseException:
            self._discard(tmp_url)
            raise

    def download_file(self, url: str, local_path: str) -> None:
        """Copy file ``url`` to local file ``local_path``."""
        pafs.copy_files(
            self.to_fs_path(url),
            local_path,
            source_filesystem=self.filesystem,
            destination_filesystem=pafs.LocalFileSystem(),
        )

    def upload_dir(self, local_dir: str, url: str) -> None:
        """Copy the files of local folder ``local_dir`` into folder ``url``, each atomically."""
        for root, _dirs, files in os.walk(local_dir):
            rel = os.path.relpath(root, local_dir)
            target = url if rel == "." else url + "/" + rel.replace(os.sep, "/")
            for name in files:
                self.upload_file(os.path.join(root, name), target + "/" + name)

    def check_writable(self) -> None:
        """Create the prefix if needed and prove it can be written, else raise StoreError."""
        probe = self.prefix_path + f"/.cerebro-write-probe-{uuid.uuid4().hex[:12]}"
        try:
            if self.exists(self.prefix_path) and not self.is_dir(self.prefix_path):
                raise StoreError(f"prefix_path must be a folder, but {self.prefix_path} is a file")
            self.makedirs(self.prefix_path)
            self.write_bytes(probe, b"ok")
            self.delete(probe)
        except StoreError:
            raise
        except Exception as e:
            raise StoreError(
                f"prefix_path {self.prefix_path} cannot be written: {type(e).__name__}: {e}"
            ) from e

    # ------------------------------------------------------------------ construction
    @staticmethod
    def create(url: str, **kwargs: Any) -> Store:
        """Make the store that fits ``url``'s scheme: a plain path or ``file://`` gives a
        :class:`LocalStore`, ``hdfs://`` an :class:`HDFSStore` through libhdfs and
        ``webhdfs://`` an :class:`HDFSStore` through WebHDFS. ``kwargs`` go to the constructor.
        """
        from cerebro.storage import registry

        return registry.store_for_url(url, **kwargs)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.prefix_path!r})"

    def __eq__(self, other: object) -> bool:
        return type(self) is type(other) and self.__getstate__() == other.__getstate__()

    def __hash__(self) -> int:
        return hash((type(self).__name__, self.prefix_path))
