"""LocalStore: a store on the local filesystem (or a shared mount such as NFS)."""

from __future__ import annotations

import contextlib
import os
import posixpath
from collections.abc import Iterator
from urllib.parse import unquote, urlsplit

import pyarrow.fs as pafs

from cerebro.exceptions import CerebroValueError
from cerebro.storage._base import Store


class LocalStore(Store):
    """A store under a local folder, e.g. ``LocalStore("/tmp/exp")``.

    On a multi-machine cluster the folder must be on a filesystem that every executor mounts
    at the same path; otherwise use :class:`~cerebro.storage.HDFSStore`.

    Args:
        prefix_path: a local folder or ``file://`` URL; created on first write.
        train_path, val_path, runs_path, logs_path: overrides of the sub-paths
            (see :class:`~cerebro.storage.Store`).
    """

    schemes = ("file", "")

    def _normalize(self, path: str, arg_name: str) -> str:
        parts = urlsplit(path)
        if parts.scheme not in self.schemes:
            raise CerebroValueError(
                f"{arg_name} of a LocalStore must be a local path or file:// URL, got {path!r}"
            )
        if parts.scheme == "file" and parts.netloc not in ("", "localhost"):
            raise CerebroValueError(
                f"{arg_name} must be a file:// URL without a host, got {path!r}"
            )
        local = unquote(parts.path) if parts.scheme else path
        local = os.path.abspath(os.path.expanduser(local))
        return "file://" + local.rstrip("/") if local != "/" else "file:///"

    def _make_filesystem(self) -> pafs.FileSystem:
        return pafs.LocalFileSystem()

    def to_fs_path(self, url: str) -> str:
        return unquote(urlsplit(url).path) if url.startswith("file:") else url

    def local_path(self, url: str) -> str:
        """The local filesystem path of ``url``."""
        return self.to_fs_path(url)

    @contextlib.contextmanager
    def local_write(self, url: str) -> Iterator[str]:
        # Write beside the target and rename: no copy for local stores. The temporary name ends
        # with the target's extension because some writers (Keras: ".keras") choose the format
        # from it.
        tmp = self.to_fs_path(self.temp_sibling(url)) + posixpath.splitext(url)[1]
        os.makedirs(os.path.dirname(tmp), exist_ok=True)
        try:
            yield tmp
            os.replace(tmp, self.to_fs_path(url))
        finally:
            if os.path.exists(tmp):
                os.remove(tmp)

    @contextlib.contextmanager
    def local_read(self, url: str) -> Iterator[str]:
        yield self.to_fs_path(url)
