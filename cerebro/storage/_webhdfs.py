"""A ``pyarrow.fs`` filesystem over WebHDFS, through the ``hdfs`` package's client.

:class:`WebHDFSHandler` implements ``pyarrow.fs.FileSystemHandler`` on top of
``hdfs.InsecureClient`` (or ``hdfs.ext.kerberos.KerberosClient``), so that
``pyarrow.fs.PyFileSystem(WebHDFSHandler(...))`` can stand wherever a pyarrow filesystem is
expected: the :class:`~cerebro.storage.Store` file methods, ``pyarrow.parquet`` reading and
writing, ``pyarrow.fs.copy_files``. It needs nothing but HTTP access to the NameNode (and, for
data, to the DataNodes it redirects to): no JVM, no Hadoop installation.

Semantics follow ``pyarrow.fs.FileSystem``: missing paths raise ``FileNotFoundError``, a move
onto an existing file of the same kind replaces it, ``delete_dir`` is recursive. Writes are
buffered in a spooled temporary file (memory first, then local disk) and sent in one CREATE
when the stream is closed; reads are ranged OPEN requests with read-ahead, so Parquet footers
and column chunks are fetched without downloading whole files.
"""

from __future__ import annotations

import contextlib
import errno
import io
import logging
import posixpath
import tempfile
import threading
from collections.abc import Iterator
from typing import Any

import pyarrow as pa
import pyarrow.fs as pafs

logger = logging.getLogger(__name__)

#: Seconds to wait for a connection, and for each read of a response.
DEFAULT_TIMEOUT = (30.0, 300.0)
#: Smallest ranged read of a random-access file (larger reads are sent as they are).
READ_AHEAD = 1 << 20
#: Writes up to this size stay in memory before the upload; larger ones spill to local disk.
SPOOL_MAX_MEMORY = 16 << 20

# RemoteException class names (Hadoop's) -> the Python exceptions pyarrow callers expect.
_REMOTE_EXCEPTIONS: dict[str, type[OSError]] = {
    "FileNotFoundException": FileNotFoundError,
    "FileAlreadyExistsException": FileExistsError,
    "AccessControlException": PermissionError,
    "SecurityException": PermissionError,
    "ParentNotDirectoryException": NotADirectoryError,
}


class WebHDFSHandler(pafs.FileSystemHandler):
    """The pyarrow filesystem handler of one WebHDFS NameNode.

    Args:
        url: the NameNode's HTTP address, e.g. ``http://namenode:9870``.
        user: the HDFS user to act as (``user.name``); ``None`` means the local login name.
            Ignored with ``kerberos=True``, where the ticket's principal is the user.
        kerberos: authenticate with SPNEGO through ``requests-kerberos``.
        timeout: ``(connect, read)`` seconds for every request.

    The handler pickles without its HTTP session and reconnects on first use, so a
    ``PyFileSystem`` built on it can travel to Spark executors.
    """

    def __init__(
        self,
        url: str,
        *,
        user: str | None = None,
        kerberos: bool = False,
        timeout: tuple[float, float] = DEFAULT_TIMEOUT,
    ) -> None:
        self.url = url.rstrip("/")
        self.user = user
        self.kerberos = kerberos
        self.timeout = timeout
        self._client: Any = None
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ client
    @property
    def client(self) -> Any:
        """The ``hdfs`` package client, created on first use."""
        with self._lock:
            if self._client is None:
                self._client = self._make_client()
            return self._client

    def _make_client(self) -> Any:
        if self.kerberos:
            from hdfs.ext.kerberos import KerberosClient  # needs requests-kerberos

            return KerberosClient(self.url, timeout=self.timeout)
        from hdfs import InsecureClient

        return InsecureClient(self.url, user=self.user, timeout=self.timeout)

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_client"] = None  # an HTTP session with locks: rebuilt on the other side
        del state["_lock"]
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, WebHDFSHandler):
            return NotImplemented
        return (self.url, self.user, self.kerberos) == (other.url, other.user, other.kerberos)

    def __hash__(self) -> int:
        return hash((self.url, self.user, self.kerberos))

    @contextlib.contextmanager
    def _errors(self, path: str) -> Iterator[None]:
        """Turn ``hdfs`` and ``requests`` errors into the ``OSError`` subclasses pyarrow uses."""
        from hdfs.util import HdfsError
        from requests.exceptions import RequestException

        try:
            yield
        except HdfsError as e:
            cls = _REMOTE_EXCEPTIONS.get(e.exception or "", OSError)
            if e.exception == "PathIsNotEmptyDirectoryException":
                raise OSError(errno.ENOTEMPTY, f"{path}: {e.message}") from e
            raise cls(f"WebHDFS {self.url}: {path}: {e.message}") from e
        except RequestException as e:
            raise ConnectionError(
                f"cannot reach WebHDFS at {self.url} (for {path}): {type(e).__name__}: {e}"
            ) from e

    def _status(self, path: str) -> dict[str, Any] | None:
        """The FileStatus of ``path``, or ``None`` when it does not exist."""
        from hdfs.util import HdfsError

        with self._errors(path):
            try:
                return self.client.status(path)
            except HdfsError as e:
                if e.exception == "FileNotFoundException":
                    return None
                raise

    def _require(self, path: str, kind: str) -> dict[str, Any]:
        """The FileStatus of ``path``, which must exist and be a ``kind`` (FILE/DIRECTORY)."""
        status = self._status(path)
        if status is None:
            raise FileNotFoundError(f"WebHDFS {self.url}: {path}: no such file or directory")
        if status["type"] != kind:
            if kind == "FILE":
                raise IsADirectoryError(f"WebHDFS {self.url}: {path} is a directory")
            raise NotADirectoryError(f"WebHDFS {self.url}: {path} is not a directory")
        return status

    @staticmethod
    def _file_info(path: str, status: dict[str, Any]) -> pafs.FileInfo:
        mtime_ns = int(status.get("modificationTime", 0)) * 1_000_000
        if status["type"] == "DIRECTORY":
            return pafs.FileInfo(path, pafs.FileType.Directory, mtime_ns=mtime_ns)
        if status["type"] == "FILE":
            return pafs.FileInfo(
                path, pafs.FileType.File, size=int(status["length"]), mtime_ns=mtime_ns
            )
        return pafs.FileInfo(path, pafs.FileType.Unknown, mtime_ns=mtime_ns)

    def _list(self, path: str) -> list[tuple[str, dict[str, Any]]]:
        with self._errors(path):
            return self.client.list(path, status=True)

    # ------------------------------------------------------------------ FileSystemHandler
    def get_type_name(self) -> str:
        return "webhdfs"

    def normalize_path(self, path: str) -> str:
        return path

    def get_file_info(self, paths: list[str]) -> list[pafs.FileInfo]:
        infos = []
        for path in paths:
            status = self._status(path)
            if status is None:
                infos.append(pafs.FileInfo(path, pafs.FileType.NotFound))
            else:
                infos.append(self._file_info(path, status))
        return infos

    def get_file_info_selector(self, selector: pafs.FileSelector) -> list[pafs.FileInfo]:
        base = selector.base_dir
        status = self._status(base)
        if status is None:
            if selector.allow_not_found:
                return []
            raise FileNotFoundError(f"WebHDFS {self.url}: {base}: no such directory")
        if status["type"] != "DIRECTORY":
            raise NotADirectoryError(f"WebHDFS {self.url}: {base} is not a directory")
        infos: list[pafs.FileInfo] = []
        pending = [base]
        while pending:
            folder = pending.pop()
            for name, child in self._list(folder):
                child_path = folder.rstrip("/") + "/" + name
                infos.append(self._file_info(child_path, child))
                if selector.recursive and child["type"] == "DIRECTORY":
                    pending.append(child_path)
        return infos

    def create_dir(self, path: str, recursive: bool) -> None:
        if not recursive:
            parent = posixpath.dirname(path.rstrip("/")) or "/"
            self._require(parent, "DIRECTORY")
        with self._errors(path):
            self.client.makedirs(path)

    def delete_dir(self, path: str) -> None:
        self._require(path, "DIRECTORY")
        with self._errors(path):
            self.client.delete(path, recursive=True)

    def delete_dir_contents(self, path: str, missing_dir_ok: bool = False) -> None:
        if path.strip("/") == "":
            raise ValueError(f"delete_dir_contents refuses the root directory, got {path!r}")
        self._delete_contents(path, missing_dir_ok)

    def delete_root_dir_contents(self) -> None:
        self._delete_contents("/", missing_dir_ok=False)

    def _delete_contents(self, path: str, missing_dir_ok: bool) -> None:
        if self._status(path) is None and missing_dir_ok:
            return
        self._require(path, "DIRECTORY")
        for name, _status in self._list(path):
            child = path.rstrip("/") + "/" + name
            with self._errors(child):
                self.client.delete(child, recursive=True)

    def delete_file(self, path: str) -> None:
        self._require(path, "FILE")
        with self._errors(path):
            self.client.delete(path)

    def move(self, src: str, dest: str) -> None:
        # WebHDFS RENAME neither replaces an existing destination nor says why it failed,
        # and it moves *into* an existing folder: check first, to keep pyarrow's semantics.
        src_status = self._status(src)
        if src_status is None:
            raise FileNotFoundError(f"WebHDFS {self.url}: cannot move {src}: it does not exist")
        dest_status = self._status(dest)
        if dest_status is not None:
            if dest_status["type"] != src_status["type"]:
                raise FileExistsError(
                    f"WebHDFS {self.url}: cannot move {src} onto {dest}: "
                    f"{dest_status['type'].lower()} in the way"
                )
            if dest_status["type"] == "DIRECTORY" and self._list(dest):
                raise OSError(
                    errno.ENOTEMPTY,
                    f"WebHDFS {self.url}: cannot move {src} onto {dest}: not empty",
                )
            with self._errors(dest):
                self.client.delete(dest, recursive=False)
        with self._errors(src):
            self.client.rename(src, dest)

    def copy_file(self, src: str, dest: str) -> None:
        self._require(src, "FILE")
        with self._errors(src), self.client.read(src, chunk_size=READ_AHEAD) as chunks:
            with self._errors(dest):
                self.client.write(dest, data=chunks, overwrite=True)

    def open_input_stream(self, path: str) -> pa.NativeFile:
        return pa.PythonFile(_SequentialReader(self, path), mode="r")

    def open_input_file(self, path: str) -> pa.NativeFile:
        size = int(self._require(path, "FILE")["length"])
        return pa.PythonFile(_RangeReader(self, path, size), mode="r")

    def open_output_stream(self, path: str, metadata: Any) -> pa.NativeFile:
        return pa.PythonFile(_SpooledWriter(self, path, append=False), mode="w")

    def open_append_stream(self, path: str, metadata: Any) -> pa.NativeFile:
        if self._status(path) is None:  # pyarrow: appending to a missing file creates it
            return self.open_output_stream(path, metadata)
        return pa.PythonFile(_SpooledWriter(self, path, append=True), mode="w")


class _SequentialReader(io.RawIOBase):
    """A forward-only reader of one OPEN response (one request for the whole file)."""

    def __init__(self, handler: WebHDFSHandler, path: str) -> None:
        super().__init__()
        self._handler = handler
        self._path = path
        self._stack = contextlib.ExitStack()
        self._pos = 0
        with handler._errors(path):
            self._raw = self._stack.enter_context(handler.client.read(path))

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        with self._handler._errors(self._path):
            data = self._raw.read(len(buffer))
        buffer[: len(data)] = data
        self._pos += len(data)
        return len(data)

    def tell(self) -> int:
        return self._pos

    def close(self) -> None:
        if not self.closed:
            self._stack.close()
        super().close()


class _RangeReader(io.RawIOBase):
    """A seekable reader that fetches byte ranges with OPEN(offset, length) and reads ahead."""

    def __init__(self, handler: WebHDFSHandler, path: str, size: int) -> None:
        super().__init__()
        self._handler = handler
        self._path = path
        self._size = size
        self._pos = 0
        self._buf = b""
        self._buf_start = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._size}[whence]
        if base + offset < 0:
            raise OSError(errno.EINVAL, f"negative seek position {base + offset}")
        self._pos = base + offset
        return self._pos

    def tell(self) -> int:
        return self._pos

    def size(self) -> int:
        return self._size

    def _fetch(self, offset: int, length: int) -> bytes:
        with self._handler._errors(self._path):
            with self._handler.client.read(self._path, offset=offset, length=length) as r:
                return r.read()

    def readinto(self, buffer: Any) -> int:
        want = min(len(buffer), self._size - self._pos)
        if want <= 0:
            return 0
        start = self._pos - self._buf_start
        if not (0 <= start and start + want <= len(self._buf)):
            length = min(max(want, READ_AHEAD), self._size - self._pos)
            self._buf = self._fetch(self._pos, length)
            self._buf_start = self._pos
            start = 0
        data = self._buf[start : start + want]
        buffer[: len(data)] = data
        self._pos += len(data)
        return len(data)


class _SpooledWriter(io.RawIOBase):
    """Collects the written bytes locally and sends them with one CREATE (or APPEND) on close."""

    def __init__(self, handler: WebHDFSHandler, path: str, *, append: bool) -> None:
        super().__init__()
        self._handler = handler
        self._path = path
        self._append = append
        self._spool = tempfile.SpooledTemporaryFile(max_size=SPOOL_MAX_MEMORY, prefix="cerebro-")

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        return self._spool.write(data)

    def tell(self) -> int:
        return self._spool.tell()

    def close(self) -> None:
        if self.closed:
            return
        try:
            size = self._spool.tell()
            self._spool.seek(0)
            if size <= SPOOL_MAX_MEMORY:
                data: Any = self._spool.read()  # sent with a Content-Length
            else:  # sent chunked, without reading it all into memory
                data = iter(lambda: self._spool.read(READ_AHEAD), b"")
            with self._handler._errors(self._path):
                if self._append:
                    self._handler.client.write(self._path, data=data, append=True)
                else:
                    self._handler.client.write(self._path, data=data, overwrite=True)
        finally:
            self._spool.close()
            super().close()


def webhdfs_filesystem(
    url: str, *, user: str | None = None, kerberos: bool = False
) -> pafs.PyFileSystem:
    """A ``pyarrow.fs.PyFileSystem`` for the WebHDFS NameNode at ``url`` (``http://host:port``)."""
    return pafs.PyFileSystem(WebHDFSHandler(url, user=user, kerberos=kerberos))
