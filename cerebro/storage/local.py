"""LocalStore: a store on the local filesystem (or a shared mount such as NFS).

Nothing a LocalStore writes is world-writable, whatever the process umask: files and the
folders it creates lose the others-write bit before they appear under their final name (other
users could otherwise replace a checkpoint that workers then load). Group bits follow the umask,
so a team sharing a folder through its group keeps working.
"""

from __future__ import annotations

import contextlib
import logging
import os
import posixpath
import stat
from collections.abc import Iterator
from urllib.parse import unquote, urlsplit

import pyarrow.fs as pafs

from cerebro.exceptions import CerebroValueError
from cerebro.storage._base import Store

logger = logging.getLogger(__name__)


def _drop_world_write(path: str) -> None:
    """Clear the others-write bit of ``path``, a file or folder this store just created."""
    try:
        mode = stat.S_IMODE(os.stat(path).st_mode)
        if mode & stat.S_IWOTH:
            os.chmod(path, mode & ~stat.S_IWOTH)
    except OSError:  # a filesystem without Unix permissions: nothing to clear
        logger.debug("could not clear the world-write bit of %s", path, exc_info=True)


def _missing_dirs(path: str) -> list[str]:
    """``path`` and its ancestors that do not exist yet (deepest first)."""
    missing = []
    while path and not os.path.lexists(path):
        missing.append(path)
        parent = os.path.dirname(path)
        if parent == path:
            break
        path = parent
    return missing


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

    def _replace(self, tmp_path: str, fs_path: str) -> None:
        _drop_world_write(tmp_path)
        super()._replace(tmp_path, fs_path)

    def makedirs(self, url: str) -> None:
        new = _missing_dirs(self.to_fs_path(url))
        super().makedirs(url)
        for path in new:
            _drop_world_write(path)

    @contextlib.contextmanager
    def local_write(self, url: str) -> Iterator[str]:
        # Write beside the target and rename: no copy for local stores. The temporary name ends
        # with the target's extension because some writers (Keras: ".keras") choose the format
        # from it.
        tmp = self.to_fs_path(self.temp_sibling(url)) + posixpath.splitext(url)[1]
        self.makedirs(url.rsplit("/", 1)[0])
        try:
            yield tmp
            _drop_world_write(tmp)
            os.replace(tmp, self.to_fs_path(url))
        finally:
            if os.path.exists(tmp):
                os.remove(tmp)

    @contextlib.contextmanager
    def local_read(self, url: str) -> Iterator[str]:
        yield self.to_fs_path(url)
